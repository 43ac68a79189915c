package test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestFromLines (TEST-CATALOG item 32): mails that start with an mbox
// `From ` or `>From ` line, whose first body line is one, and whose
// first line is a 100 KB `From ` line. smtpd gives From_ lines no
// meaning and body lines have no length limit (as in Postfix), so each
// gets 250 and is stored byte for byte; the SIZE limit still applies to
// a 200 KB `From ` line (552 5.3.4, nothing stored, the session goes on).
// All in one session: the mails after the 552 guard a bug this test found
// (the guard served the next DATA the bytes the refused message had left
// unread first, so the next mail got 250 but was stored with ~10 kB of
// the refused one and a command line before its own bytes).
func TestFromLines(t *testing.T) {
	t.Parallel()
	const (
		rcpt  = "from@twinmx.test"
		limit = 150000
	)
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1,
		Extra: []string{"--max-size", fmt.Sprint(limit)}})
	token := fmt.Sprintf("fromline-%d", time.Now().UnixNano())
	header := func(name string) string {
		return "From: alice@sender.test\r\nTo: " + rcpt + "\r\nSubject: " + token + "-" + name + "\r\n"
	}
	from100k := "From " + strings.Repeat("x", 100<<10) + "\r\n"
	cases := []struct{ name, msg string }{
		{"first-line", "From alice@sender.test Sun Nov 29 10:00:00 2026\r\n" + header("first-line") + "\r\nbody\r\n"},
		{"quoted-first-line", ">From alice@sender.test Sun Nov 29 10:00:00 2026\r\n" + header("quoted-first-line") + "\r\nbody\r\n"},
		{"first-body-line", header("first-body-line") + "\r\nFrom alice@sender.test Sun Nov 29 10:00:00 2026\r\nbody\r\n"},
		{"quoted-first-body-line", header("quoted-first-body-line") + "\r\n>From the start\r\n>>From deeper\r\nbody\r\n"},
		{"100k-first-line", from100k + header("100k-first-line") + "\r\nbody\r\n"},
		{"100k-first-body-line", header("100k-first-body-line") + "\r\n" + from100k + "body\r\n"},
	}

	c := greeted(t, d.addr)
	ctx := proctest.Ctx(t, time.Minute)
	for i, tc := range cases {
		msg := []byte(tc.msg)
		_, r, err := c.transaction("alice@sender.test", []string{rcpt}, msg)
		if err != nil || r.Code != 250 {
			t.Errorf("%s: %v %v; want 250", tc.name, r, err)
			continue
		}
		stored, err := s.storedMail(ctx, receiveKey(msg, rcpt))
		if err != nil {
			t.Errorf("%s: read back: %v", tc.name, err)
			continue
		}
		if _, _, rest := stripOurFields(stored); !bytes.Equal(rest, msg) {
			t.Errorf("%s: stored differently: %s", tc.name, firstDiff(rest, msg))
		}
		// The 200 KB From_ line in the middle: over SIZE, refused whole,
		// and the session stays usable for the next case.
		if i == 1 {
			big := []byte("From " + strings.Repeat("y", 200<<10) + "\r\n" + header("200k") + "\r\nbody\r\n")
			_, r, err := c.transaction("alice@sender.test", []string{rcpt}, big)
			if err != nil || r.Code != 552 || !strings.HasPrefix(r.Text, "5.3.4") {
				t.Errorf("200 KB From_ line over --max-size %d: %v %v; want 552 5.3.4", limit, r, err)
			}
		}
	}
	for _, m := range s.mails(20) {
		if strings.Contains(m.Fields["subject"], token+"-200k") {
			t.Errorf("the mail over SIZE was stored: %v", m)
		}
	}
}
