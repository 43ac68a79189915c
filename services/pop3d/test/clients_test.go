package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// sampleMails are hand-made edge cases plus the first 60 corpus mails
// (when the corpus is there).
func sampleMails(t *testing.T) [][]byte {
	mails := [][]byte{
		[]byte("From: a@x.example\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading\r\nend\r\n"),
		[]byte("From: a@x.example\r\nSubject: long line\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n"),
		[]byte("From: a@x.example\r\nSubject: no final line end\r\n\r\nlast"),
		[]byte("From: a@x.example\r\nSubject: empty body\r\n\r\n"),
	}
	if _, err := os.Stat("../../../../shared/corpus"); err == nil || os.Getenv("TWINMX_CORPUS") != "" {
		for _, m := range loadCorpus(t)[:60] {
			mails = append(mails, m.raw)
		}
	}
	return mails
}

// expected maps UIDL to the CRLF form a client receives.
func expected(uids []string, mails [][]byte) map[string][]byte {
	want := map[string][]byte{}
	for i, u := range uids {
		want[u] = crlf(mails[i])
	}
	return want
}

// TestPoplib: Python's poplib (CAPA, USER/PASS, UIDL, RETR, QUIT) gets
// every mail; its lines joined with CRLF equal what was delivered.
func TestPoplib(t *testing.T) {
	requireTool(t, "python3", "python3")
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	p := s.startPOP3D("")
	mails := sampleMails(t)
	want := expected(deliverAll(t, s, "alice@x.example", mails), mails)
	out, seen := t.TempDir(), filepath.Join(t.TempDir(), "seen")
	host, port, _ := strings.Cut(p.addr, ":")
	got := python(t, host, port, "alice", "alice password", out, seen)
	if got != fmt.Sprintf("downloaded %d", len(want)) {
		t.Fatalf("poplib: %q, want %d mails", got, len(want))
	}
	compareDir(t, out, want, false)
	// Run again: everything is seen, nothing is downloaded.
	if got := python(t, host, port, "alice", "alice password", out, seen); got != "downloaded 0" {
		t.Fatalf("second poplib run: %q", got)
	}
}

func python(t *testing.T, args ...string) string {
	t.Helper()
	return pythonScript(t, "testdata/poplib_fetch.py", args...)
}

// pythonScript runs a Python script of testdata and returns its output.
func pythonScript(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("python3", append([]string{script}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	proctest.DieWithTest(cmd)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// compareDir checks that dir holds exactly the mails of want, one file
// each (matched by content, so a mail that came twice fails), compared in
// LF form (CRLF turned into LF) when lfForm, else byte for byte.
func compareDir(t *testing.T, dir string, want map[string][]byte, lfForm bool) {
	t.Helper()
	compareDirStrip(t, dir, want, lfForm, false)
}

// compareDirStrip is compareDir; with stripReturnPath, the first line of
// each file must be a Return-Path field, and only bodies (after the first
// empty line) are compared: getmail's Maildir delivery re-writes the header
// (it moves Return-Path first and re-emits fields through Python's email
// package).
func compareDirStrip(t *testing.T, dir string, want map[string][]byte, lfForm, stripReturnPath bool) {
	t.Helper()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]int{}
	for u, w := range want {
		k := string(w)
		if lfForm {
			k = string(lf(w))
		}
		if stripReturnPath {
			k = string(bodyOf([]byte(k)))
		}
		left[k]++
		_ = u
	}
	n := 0
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n++
		if stripReturnPath {
			first, rest, _ := bytes.Cut(b, []byte("\n"))
			if !bytes.HasPrefix(first, []byte("Return-Path: ")) {
				t.Errorf("%s does not start with getmail's Return-Path: %.100q", f.Name(), b)
			}
			b = bodyOf(rest)
		}
		if left[string(b)] == 0 {
			t.Errorf("%s (%d octets) matches no delivered mail (or came twice): %.200q", f.Name(), len(b), b)
			continue
		}
		left[string(b)]--
	}
	if n != len(want) {
		t.Errorf("%d files, want %d", n, len(want))
	}
}

// TestFetchmail: fetchmail with --keep and its UIDL file (.fetchids)
// delivers every mail to an MDA; fetchmail hands the MDA LF line ends,
// so mails are compared with CRLF turned into LF. A second run fetches
// nothing.
func TestFetchmail(t *testing.T) {
	requireTool(t, "fetchmail", "fetchmail")
	s := newSite(t, "A", "")
	s.user("bob", "bob password", "bob@x.example")
	p := s.startPOP3D("")
	mails := sampleMails(t)
	want := expected(deliverAll(t, s, "bob@x.example", mails), mails)
	dir, out := t.TempDir(), t.TempDir()
	fm := newFetchmail(t, dir, out, "bob", "bob password")
	fm.run(p.addr, 0)
	compareDir(t, out, want, true)
	fm.run(p.addr, 0)
	compareDir(t, out, want, true)
}

type fetchmail struct {
	t              *testing.T
	dir, out, user string
	pass           string
}

func newFetchmail(t *testing.T, dir, out, user, pass string) *fetchmail {
	mda := filepath.Join(dir, "mda.sh")
	// Each mail into its own file (fetchmail expands % in mda strings, so
	// the naming lives in the script).
	script := "#!/bin/sh\nexec cat > \"$(mktemp " + out + "/mail.XXXXXXXX)\"\n"
	if err := os.WriteFile(mda, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &fetchmail{t: t, dir: dir, out: out, user: user, pass: pass}
}

// run polls addr once; limit > 0 fetches at most that many mails.
func (f *fetchmail) run(addr string, limit int) {
	f.t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	rc := fmt.Sprintf("set no syslog\nset idfile %q\npoll %s service %s protocol pop3 uidl timeout 60\n"+
		"  user %q password %q is %q here\n  keep\n  no rewrite\n  sslproto ''\n  mda %q\n",
		filepath.Join(f.dir, "fetchids"), host, port, f.user, f.pass, f.user, filepath.Join(f.dir, "mda.sh"))
	if limit > 0 {
		rc += fmt.Sprintf("  fetchlimit %d\n", limit)
	}
	rcPath := filepath.Join(f.dir, "fetchmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command("fetchmail", "-f", rcPath, "--invisible", "--nodetach", "--pidfile", filepath.Join(f.dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+f.dir, "FETCHMAILHOME="+f.dir)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	proctest.DieWithTest(cmd)
	err := cmd.Run()
	// Exit 1 means "no mail" (a poll that finds nothing new), 13 "fetch
	// limit reached": both are normal outcomes.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && (ee.ExitCode() == 1 || ee.ExitCode() == 13)) {
		f.t.Fatalf("fetchmail: %v\n%s", err, outb.String())
	}
}

// TestGetmail: getmail6 (SimplePOP3Retriever, read_all false, delete
// false) writes every mail to a Maildir; getmail writes LF line ends and
// re-writes the header (Return-Path first), so the bodies are compared,
// byte for byte with CRLF turned into LF, and every file must start with
// a Return-Path field. A second run fetches nothing.
func TestGetmail(t *testing.T) {
	requireTool(t, "getmail", "getmail6")
	s := newSite(t, "A", "")
	s.user("carol", "carol password", "carol@x.example")
	p := s.startPOP3D("")
	mails := sampleMails(t)
	want := expected(deliverAll(t, s, "carol@x.example", mails), mails)
	dir := unprivilegedDir(t)
	maildir := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(p.addr, ":")
	rc := fmt.Sprintf("[retriever]\ntype = SimplePOP3Retriever\nserver = %s\nport = %s\nusername = carol\npassword = carol password\n\n"+
		"[destination]\ntype = Maildir\npath = %s/\n\n[options]\nread_all = false\ndelete = false\ndelivered_to = false\nreceived = false\nverbose = 0\nmessage_log_syslog = false\n",
		host, port, maildir)
	rcPath := filepath.Join(dir, "getmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir)
	getmail := func() {
		for try := 1; ; try++ {
			cmd := exec.Command("getmail", "--getmaildir", dir, "--rcfile", rcPath)
			asNobody(cmd)
			out, err := cmd.CombinedOutput()
			// getmail writes each mail from a forked child and gives up
			// on one that does not end in 180 s: twice in CI (2026-11-30,
			// after 29 and 36 of 64 mails, on a loaded machine), with
			// pop3d idle waiting for the next command. That is getmail's
			// own process handling, not the POP3 exchange. A failed run
			// does not save which mails it has (its oldmail file), so
			// the next would fetch them all again: the retry starts
			// afresh, and the checks below stay exact.
			if err != nil && try == 1 && strings.Contains(string(out), "waiting child") && strings.Contains(string(out), "timed out") {
				t.Logf("getmail's delivery child timed out; running getmail again from an empty Maildir:\n%s", out)
				emptyGetmailState(t, dir, maildir)
				continue
			}
			if err != nil {
				t.Fatalf("getmail: %v\n%s", err, out)
			}
			return
		}
	}
	getmail()
	compareDirStrip(t, filepath.Join(maildir, "new"), want, true, true)
	getmail()
	compareDirStrip(t, filepath.Join(maildir, "new"), want, true, true)
}

// emptyGetmailState removes what a failed getmail run left: the mails
// it delivered and its record of the mails it has seen.
func emptyGetmailState(t *testing.T, getmailDir, maildir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		files, err := os.ReadDir(filepath.Join(maildir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.Remove(filepath.Join(maildir, sub, f.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, err := filepath.Glob(filepath.Join(getmailDir, "oldmail-*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// getmail refuses to deliver as root: as root, it runs as nobody in a
// folder nobody owns.
const nobody = 65534

func unprivilegedDir(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "pop3d-getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func chownTree(t *testing.T, dir string) {
	t.Helper()
	if os.Getuid() != 0 {
		return
	}
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func asNobody(cmd *exec.Cmd) {
	proctest.DieWithTest(cmd)
	if os.Getuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
	}
}

// bodyOf returns the part of an LF-form mail after its first empty line.
func bodyOf(b []byte) []byte {
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return b[i+2:]
	}
	return nil
}
