package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFailover is SPEC §11 scenario 7: two sites (dbd A and B with
// backupd between them, one pop3d per site). Mail delivered at site A is
// replicated to B. A client that leaves mail on the server downloads part
// of it from A; A's pop3d and dbd are killed with SIGKILL; the client goes
// on against B and gets the rest: nothing twice, nothing missed. Python's
// poplib (keeping seen UIDLs in a file) and fetchmail (--keep, its
// .fetchids file, a fetch limit for the first poll) each do it.
func TestFailover(t *testing.T) {
	dir := t.TempDir()
	runProg(t, nil, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	a := newSite(t, "A", filepath.Join(dir, "backupd.pub"))
	b := newSite(t, "B", filepath.Join(dir, "backupd.pub"))
	startBackupd(t, dir, a, b)

	// Accounts at site A only: backupd copies them to B like the mail.
	a.user("alice", "alice password", "alice@x.example")
	a.user("bob", "bob password", "bob@x.example")
	var mails [][]byte
	for i := range 30 {
		mails = append(mails, []byte(fmt.Sprintf("From: s@x.example\r\nSubject: failover %d\r\nMessage-ID: <%d@x.example>\r\n\r\nbody %d\r\n.\r\n", i, i, i)))
	}
	uidsA := deliverAll(t, a, "alice@x.example", mails)
	uidsB := deliverAll(t, a, "bob@x.example", mails)
	wantA, wantB := expected(uidsA, mails), expected(uidsB, mails)
	pa, pb := a.startPOP3D(""), b.startPOP3D("")
	waitMail(t, pb.addr, "alice", "alice password", len(mails))
	waitMail(t, pb.addr, "bob", "bob password", len(mails))

	// poplib: 12 mails from A.
	requireTool(t, "python3", "python3")
	out, seen := t.TempDir(), filepath.Join(t.TempDir(), "seen")
	hostA, portA, _ := strings.Cut(pa.addr, ":")
	if got := python(t, hostA, portA, "alice", "alice password", out, seen, "12"); got != "downloaded 12" {
		t.Fatalf("poplib at A: %q", got)
	}
	// fetchmail: 12 mails from A.
	haveFetchmail := false
	if _, err := exec.LookPath("fetchmail"); err == nil {
		haveFetchmail = true
	} else if os.Getenv("TWINMX_REQUIRE_CLIENTS") != "" {
		t.Fatal("fetchmail is missing and TWINMX_REQUIRE_CLIENTS is set (apt-get install fetchmail)")
	}
	fdir, fout := t.TempDir(), t.TempDir()
	fm := newFetchmail(t, fdir, fout, "bob", "bob password")
	if haveFetchmail {
		fm.run(pa.addr, 12)
		if files, _ := os.ReadDir(fout); len(files) != 12 {
			t.Fatalf("fetchmail at A fetched %d mails, want 12", len(files))
		}
	}

	// Site A dies.
	pa.Kill()
	a.Kill()

	hostB, portB, _ := strings.Cut(pb.addr, ":")
	if got := python(t, hostB, portB, "alice", "alice password", out, seen); got != fmt.Sprintf("downloaded %d", len(mails)-12) {
		t.Fatalf("poplib at B after the failover: %q, want the %d mails it had not", got, len(mails)-12)
	}
	compareDir(t, out, wantA, false)
	if haveFetchmail {
		fm.run(pb.addr, 0)
		compareDir(t, fout, wantB, true)
	} else {
		t.Log("fetchmail is not installed: only poplib failed over (apt-get install fetchmail)")
	}
}

// waitMail waits until login sees n mails at addr (replication to the
// other site), for at most a minute.
func waitMail(t *testing.T, addr, login, pass string, n int) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := dialPOP(addr, login, pass)
		if err != nil {
			last = err.Error()
			continue
		}
		nums, _, err := c.uidl()
		c.quit()
		if err == nil && len(nums) == n {
			return
		}
		last = fmt.Sprintf("%d mails, %v", len(nums), err)
	}
	t.Fatalf("%s at %s never saw %d mails: %s", login, addr, n, last)
}
