package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestFetchmailIMAP: fetchmail over IMAP ("keep", no rewriting, each mail
// handed to an MDA that writes it to a file) gets every mail of INBOX,
// hand-made edge cases and 60 corpus mails, with exactly the bytes
// delivered but for the line ends (an MDA gets LF; --invisible: no
// Received field of its own); the mails are marked \Seen, so a second
// poll fetches nothing. fetchmail finds the mails with SEARCH UNSEEN
// UNDELETED, reads them by sequence number, RFC822.SIZE of all, then
// RFC822.HEADER and BODY.PEEK[TEXT] of each, and sets \Seen with STORE:
// another path through imapd than imaplib's and mutt's.
func TestFetchmailIMAP(t *testing.T) {
	fetchmail := need(t, "fetchmail", "fetchmail")
	s := newSite(t)
	mails := [][]byte{
		[]byte("From: a@x.example\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading\r\nend\r\n"),
		[]byte("From: a@x.example\r\nSubject: long line\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n"),
		[]byte("From: a@x.example\r\nSubject: empty body\r\n\r\n"),
	}
	mails = append(mails, loadCorpus(t)[:60]...)
	s.deliver(mails)

	dir, out := t.TempDir(), t.TempDir()
	mda := filepath.Join(dir, "mda.sh")
	if err := os.WriteFile(mda, []byte("#!/bin/sh\nexec cat > \"$(mktemp "+out+"/mail.XXXXXXXX)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(s.imapAddr, ":")
	rc := fmt.Sprintf("set no syslog\npoll %s service %s protocol imap timeout 60\n"+
		"  user %q password %q is %q here\n  keep\n  no rewrite\n  sslproto ''\n  mda %q\n",
		host, port, login, password, login, mda)
	rcPath := filepath.Join(dir, "fetchmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	poll := func() string {
		cmd := exec.CommandContext(proctest.Ctx(t, 2*time.Minute), fetchmail, "-f", rcPath, "--nodetach", "--invisible", "-v",
			"--pidfile", filepath.Join(dir, "pid"))
		cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
		res, err := cmd.CombinedOutput()
		// Exit 1: no new mail.
		if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
			t.Fatalf("fetchmail: %v\n%s", err, proctest.Tail(string(res), 40))
		}
		return string(res)
	}
	res := poll()

	want := map[string]int{}
	for _, m := range mails {
		want[string(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")))]++
	}
	files, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(mails) {
		t.Fatalf("fetchmail wrote %d mails, want %d:\n%s", len(files), len(mails), proctest.Tail(res, 40))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(out, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got := string(b)
		if want[got] == 0 {
			t.Errorf("%s is no delivered mail (or one fetched twice): %.300q", f.Name(), got)
			continue
		}
		want[got]--
	}
	res = poll()
	if n, _ := os.ReadDir(out); len(n) != len(mails) {
		t.Errorf("the second poll fetched again: %d files for %d mails\n%s", len(n), len(mails), proctest.Tail(res, 20))
	}
}
