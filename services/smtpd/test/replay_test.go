package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestReplayCommand records real sessions (one accepted mail, one unknown
// recipient) and plays them back with `smtpd replay`: the stored mail's
// DATA is rebuilt from dbd, and every reply code matches.
func TestReplayCommand(t *testing.T) {
	s := newSite(t)
	s.Start()
	const rcpt = "replay@twinmx.test"
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{MinCopies: 1})
	msg := []byte("Subject: replay\r\n\r\n.leading dot\r\nbare\rCR\r\n")
	if r, err := sendMail(d.addr, "a@example.net", []string{rcpt}, msg, 20*time.Second); err != nil || r.Code != 250 {
		t.Fatalf("send: %v %v", r, err)
	}
	if r, err := sendMail(d.addr, "a@example.net", []string{"nobody@twinmx.test"}, msg, 20*time.Second); err != nil || r.Code != 550 {
		t.Fatalf("unknown recipient: %v %v", r, err)
	}
	// Captures are stored when the connections close: wait for both.
	ctx := proctest.Ctx(t, 20*time.Second)
	for n := 0; n < 2; {
		st, err := s.Client().Scan(ctx, model.Capture, 10)
		if err != nil {
			t.Fatal(err)
		}
		for n = 0; ; n++ {
			if _, err := st.Next(ctx); err != nil {
				break
			}
		}
		st.Close()
		if ctx.Err() != nil {
			t.Fatalf("%d capture rows, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The test has one smtpd, the one that recorded the sessions: replay
	// refuses it (a replay at the recording MX is real mail) unless told.
	args := []string{"replay", "--to", d.addr, "--db", s.Addr, "--db-pub", s.Key("dbd.pub"), "--key", s.Key("admin"), "--last", "2"}
	out, err := exec.Command(filepath.Join(binDir, "smtpd"), args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "looks like the MX") || strings.Contains(string(out), ": same") {
		t.Fatalf("smtpd replay at the recording smtpd: %v\n%s\nwant a refusal", err, out)
	}
	out, err = exec.Command(filepath.Join(binDir, "smtpd"), append(args, "--recorded-server")...).CombinedOutput()
	if err != nil {
		t.Fatalf("smtpd replay: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), ": same"); n != 2 {
		t.Fatalf("want 2 sessions replayed the same:\n%s", out)
	}
}
