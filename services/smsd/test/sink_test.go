package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestForwardToSmtpSink (TEST-CATALOG 92, outbound): 1000 accepted mails
// of a mailbox with a forward copy go out through smsd's relay client to
// Postfix's smtp-sink, which dumps every transaction to a file: each mail
// arrives exactly once, to the forward address, from --forward-from, and
// byte for byte what is stored (smtp-sink writes LF line ends and its own
// Received field first).
func TestForwardToSmtpSink(t *testing.T) {
	sinkBin, err := exec.LookPath("smtp-sink")
	if err != nil {
		for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"} {
			if _, err := os.Stat(p); err == nil {
				sinkBin = p
			}
		}
	}
	pf, uerr := user.Lookup("postfix")
	if sinkBin == "" || uerr != nil || os.Geteuid() != 0 {
		if os.Getenv("TWINMX_REQUIRE_POSTFIX") != "" {
			t.Fatalf("smtp-sink (Debian postfix), the user postfix and root are needed (TWINMX_REQUIRE_POSTFIX is set): %v %v", err, uerr)
		}
		t.Skip("needs Postfix's smtp-sink, run as root")
	}
	const n = 1000
	dir := t.TempDir()
	run(t, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	a := newSite(t, dir, "A", filepath.Join(dir, "backupd.pub"))
	ctx := proctest.Ctx(t, 5*time.Minute)
	if _, _, err := a.Client().FindOrInsert(ctx, model.Mailbox, model.MailboxContent(box)); err != nil {
		t.Fatal(err)
	}
	run(t, "smsd", append([]string{"forward", "add"}, append(a.DBFlags("admin"), "--mailbox", box, copyTo)...)...)

	// smtp-sink drops its privileges to postfix: its dump folder must be
	// reachable and writable by that user.
	root, err := os.MkdirTemp("", "twinmx-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dump := filepath.Join(root, "dump")
	uid, _ := strconv.Atoi(pf.Uid)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dump, uid, -1); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreePort(t)
	sinkLog := &proctest.SyncBuffer{}
	sk := exec.Command(sinkBin, "-u", "postfix", "-d", dump+"/%H%M%S.", addr, "100")
	sk.Stdout, sk.Stderr = sinkLog, sinkLog
	proctest.DieWithTest(sk)
	if err := sk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sk.Process.Kill(); sk.Wait() })
	proctest.WaitListening(t, addr, 10*time.Second, sinkLog)

	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	sent := map[string][]byte{} // Message-ID -> the stored mail
	for i := range n {
		m := deliver(t, ctx, a, "someone@big.example", fmt.Sprintf("sink-%04d", i), at, true, model.Accept)
		sent[fmt.Sprintf("sink-%04d@test", i)] = m.raw
	}
	m := proctest.FreePort(t)
	proctest.StartProc(t, binDir, "smsd", m, append(a.DBFlags("notify"), "--site", "A", "--relay", addr, "--relay-tls", "none",
		"--forward-from", "smsd@example.com", "--retry-min", "100ms", "--retry-max", "500ms", "--metrics", m)...)

	files := func() []string {
		ents, _ := os.ReadDir(dump)
		var out []string
		for _, e := range ents {
			out = append(out, filepath.Join(dump, e.Name()))
		}
		return out
	}
	waitForLong(t, 3*time.Minute, fmt.Sprintf("%d dumps at smtp-sink", n), func() bool { return len(files()) >= n })
	time.Sleep(500 * time.Millisecond) // any copy sent twice would arrive now

	msgID := regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>$`)
	seen := map[string]int{}
	for _, f := range files() {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The dump: X-Client-Addr, X-Client-Proto, X-Helo-Args,
		// X-Mail-Args, X-Rcpt-Args, smtp-sink's Received field (three
		// lines), then the message with LF line ends and one more LF.
		lines := bytes.SplitN(b, []byte("\n"), 9)
		if len(lines) < 9 || !bytes.HasPrefix(lines[3], []byte("X-Mail-Args: <smsd@example.com>")) ||
			!bytes.Equal(lines[4], []byte("X-Rcpt-Args: <"+copyTo+">")) || !bytes.HasPrefix(lines[5], []byte("Received: from ")) {
			t.Errorf("dump %s is not a copy to %s from smsd@example.com:\n%.400s", f, copyTo, b)
			continue
		}
		got := lines[8]
		id := msgID.FindSubmatch(got)
		if id == nil {
			t.Errorf("dump %s without a Message-ID:\n%.400s", f, got)
			continue
		}
		seen[string(id[1])]++
		// The stored mail byte for byte, below the Delivered-To field
		// that marks the copy against forward loops.
		want := append([]byte("Delivered-To: "+box+"\n"), bytes.ReplaceAll(sent[string(id[1])], []byte("\r\n"), []byte("\n"))...)
		want = append(want, '\n')
		if !bytes.Equal(got, want) {
			t.Errorf("copy of %s differs from the stored mail:\n got %q\nwant %q", id[1], got, want)
		}
	}
	for id := range sent {
		if seen[id] != 1 {
			t.Errorf("%s arrived %d times at smtp-sink, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct mails at smtp-sink, want %d", len(seen), n)
	}
}

// waitForLong polls cond every 50 ms for at most limit.
func waitForLong(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", limit, what)
}
