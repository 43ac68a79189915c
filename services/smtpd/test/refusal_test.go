package test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestMailAfterRefusal: in one session, each refusal of a whole message
// (over SIZE, a header section over --max-header-size, too many Received
// fields, a bare LF, a first line that continues no field) is followed
// by a plain mail, which must get 250 and be stored byte for byte. A
// refusal can leave part of the refused message unread; none of it may
// reach the next mail (the bug TestFromLines found after a 552).
func TestMailAfterRefusal(t *testing.T) {
	t.Parallel()
	const rcpt = "after@twinmx.test"
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1,
		Extra: []string{"--max-size", "100000", "--max-header-size", "8192", "--max-hops", "5"}})
	token := fmt.Sprintf("after-%d", time.Now().UnixNano())
	header := func(name string) string {
		return "From: a@sender.test\r\nTo: " + rcpt + "\r\nSubject: " + token + "-" + name + "\r\n"
	}
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 40)
	refusals := []struct {
		name, msg string
		code      int
		enhanced  string
	}{
		{"over-size", header("over-size") + "\r\n" + strings.Repeat(body, 60), 552, "5.3.4"},
		{"header-size", header("header-size") + strings.Repeat("X-Pad: "+strings.Repeat("p", 90)+"\r\n", 200) + "\r\n" + body, 552, "5.3.4"},
		{"hops", strings.Repeat("Received: from relay.sender.test by relay2.sender.test; Sun, 29 Nov 2026 10:00:00 +0000\r\n", 6) +
			header("hops") + "\r\n" + body, 554, "5.4.6"},
		{"bare-lf", header("bare-lf") + "\r\n" + body + "bare\nLF\r\n" + body, 550, "5.6.0"},
		{"leading-space", " a continuation line first\r\n" + header("leading-space") + "\r\n" + body, 550, "5.6.0"},
	}

	c := greeted(t, d.addr)
	ctx := proctest.Ctx(t, time.Minute)
	for _, rf := range refusals {
		_, r, err := c.transaction("a@sender.test", []string{rcpt}, []byte(rf.msg))
		if err != nil || r.Code != rf.code || !strings.HasPrefix(r.Text, rf.enhanced) {
			t.Fatalf("%s: %v %v; want %d %s", rf.name, r, err, rf.code, rf.enhanced)
		}
		next := []byte(header("after-"+rf.name) + "\r\nthe mail after the refusal\r\n")
		_, r, err = c.transaction("a@sender.test", []string{rcpt}, next)
		if err != nil || r.Code != 250 {
			t.Fatalf("the mail after %s: %v %v; want 250", rf.name, r, err)
		}
		stored, err := s.storedMail(ctx, receiveKey(next, rcpt))
		if err != nil {
			t.Errorf("the mail after %s: not stored as sent: %v", rf.name, err)
			continue
		}
		if _, _, rest := stripOurFields(stored); !bytes.Equal(rest, next) {
			t.Errorf("the mail after %s: stored differently: %s", rf.name, firstDiff(rest, next))
		}
	}
	for _, m := range s.mails(30) {
		if m.Fields["to"] == rcpt && !strings.Contains(m.Fields["subject"], token+"-after-") {
			t.Errorf("stored, but it was refused or is not one of the mails sent: %v", m)
		}
	}
}
