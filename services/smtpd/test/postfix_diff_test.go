package test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDifferentialPostfix runs short SMTP sessions of odd but legal (and
// some illegal) commands against Postfix's smtpd and twinmx's, both on
// loopback with HELO required and a 100 kB SIZE limit, and compares the
// reply code of every step. Postfix is the reference for what a sending
// MTA meets every day; where twinmx answers differently by design the
// step names why (want), and the test checks that answer instead. It
// found that an unknown MAIL parameter got 500 (RFC 5321 §4.1.1.11 wants
// 555), a line that is no command 501 (§4.2.4: 500), and <Postmaster>
// without --postmaster 501 (§4.5.1: it must be taken), and that
// bob@twinmx.test. (a domain written with its final dot) named no mailbox.
func TestDifferentialPostfix(t *testing.T) {
	t.Parallel()
	requirePostfix(t)
	s, d := edgeSite(t)
	// Where <Postmaster> goes without --postmaster (RFC 5321 §4.5.1).
	s.addMailbox("postmaster@mx.twinmx.test")
	pf := newPostfix(t, postfixConfig{Hold: true, Main: map[string]string{
		"myhostname":          "postfix.diff.test",
		"smtpd_helo_required": "yes",
		"message_size_limit":  fmt.Sprint(edgeLimit),
	}})

	const ehlo = "EHLO client.test"
	const mail = "MAIL FROM:<s@sender.test>"
	const rcpt = "RCPT TO:<bob@twinmx.test>"
	msg := fmt.Sprintf("Subject: differential %d\r\nFrom: s@sender.test\r\n\r\nbody\r\n.", time.Now().UnixNano())
	sessions := []struct {
		name  string
		steps []step
	}{
		{"a whole mail", []step{{cmd: ehlo}, {cmd: mail}, {cmd: rcpt}, {cmd: "DATA"}, {cmd: msg}, {cmd: "QUIT"}}},
		{"null sender", []step{{cmd: ehlo}, {cmd: "MAIL FROM:<>"}, {cmd: rcpt}}},
		{"HELO without a name", []step{{cmd: "HELO"}, {cmd: "EHLO"}, {cmd: "HELO client.test"}}},
		{"MAIL before HELO", []step{{cmd: mail}, {cmd: "RCPT TO:<bob@twinmx.test>"}}},
		{"commands out of order", []step{{cmd: ehlo}, {cmd: rcpt}, {cmd: "DATA"}, {cmd: mail}, {cmd: mail},
			{cmd: "DATA", want: "503", why: "DATA with no recipient: RFC 5321 §3.3 allows 503 or 554; Postfix says 554"}}},
		{"lower case and spaces", []step{{cmd: "ehlo client.test"}, {cmd: "mail from:<s@sender.test>"}, {cmd: "rcpt to:<bob@twinmx.test>"}, {cmd: "NOOP   "}}},
		{"NOOP and RSET", []step{{cmd: ehlo}, {cmd: "NOOP"}, {cmd: "NOOP with an argument"}, {cmd: mail}, {cmd: "RSET"}, {cmd: rcpt}}},
		{"unknown and unoffered commands", []step{{cmd: ehlo}, {cmd: "FOO bar"}, {cmd: "VRFY bob"},
			{cmd: "HELP", want: "502", why: "HELP is not implemented (RFC 5321 §4.5.1 does not require it): 502; Postfix says 500"},
			{cmd: "EXPN list", want: "502", why: "EXPN is not implemented: 502 (RFC 5321 §4.2.4); Postfix says 500, not recognized"}}},
		{"SIZE", []step{{cmd: ehlo}, {cmd: mail + " SIZE=100"}, {cmd: "RSET"}, {cmd: mail + fmt.Sprintf(" SIZE=%d", edgeLimit+1)}, {cmd: mail + " SIZE=x"}}},
		{"BODY and unknown parameters", []step{{cmd: ehlo}, {cmd: mail + " BODY=8BITMIME"}, {cmd: "RSET"}, {cmd: mail + " XFOO=1"}, {cmd: mail}, {cmd: rcpt + " XBAR=2"}}},
		{"recipient forms", []step{{cmd: ehlo}, {cmd: mail},
			{cmd: "RCPT TO:<BOB@TwinMX.Test>"},
			{cmd: "RCPT TO:<\"bob\"@twinmx.test>"},
			{cmd: "RCPT TO:<@relay.test:bob@twinmx.test>"},
			{cmd: "RCPT TO:<@a.test,@b.test:bob@twinmx.test>"},
			{cmd: "RCPT TO:<postmaster>"},
			{cmd: "RCPT TO: <bob@twinmx.test>"}}},
		{"sender forms", []step{{cmd: ehlo},
			{cmd: "MAIL FROM: <s@sender.test>"}, {cmd: "RSET"},
			{cmd: "MAIL FROM:<@relay.test:s@sender.test>"}, {cmd: "RSET"},
			{cmd: "MAIL FROM:<\"a b\"@sender.test>"}, {cmd: "RSET"},
			{cmd: "MAIL FROM:<s@[192.0.2.1]>"}, {cmd: "RSET"},
			{cmd: "MAIL FROM:<s@sender.test"}}},
		{"syntax errors", []step{{cmd: ehlo}, {cmd: "MAIL TO:<s@sender.test>"}, {cmd: "MAIL FROM:"}, {cmd: mail}, {cmd: "RCPT FROM:<bob@twinmx.test>"}, {cmd: "RCPT TO:"},
			{cmd: "DATA now", want: "501", why: "an argument to DATA is a syntax error (501) before the missing recipients (Postfix: 554)"}}},
		{"DSN and other extension parameters", []step{{cmd: ehlo},
			{cmd: mail + " RET=HDRS ENVID=abc123", want: "504", why: "DSN is not offered (twinmx answers every mail during the session and sends no notices), so RET is a parameter not implemented; Postfix offers DSN"},
			{cmd: "RSET"}, {cmd: mail}, {cmd: rcpt + " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@twinmx.test", want: "504", why: "as RET"}, {cmd: "RSET"},
			{cmd: mail + " SIZE=100 BODY=7BIT"}, {cmd: "RSET"},
			{cmd: mail + " SMTPUTF8"}, {cmd: "RSET"},
			{cmd: mail + " RET=NONSENSE", want: "504", why: "as RET above"}}},
		{"HELO forms", []step{{cmd: "EHLO [127.0.0.1]"}, {cmd: "EHLO client.test"}, {cmd: "HELO client.test"}, {cmd: "EHLO under_score.test"}, {cmd: mail}}},
		{"address forms", []step{{cmd: ehlo},
			{cmd: "MAIL FROM:<" + strings.Repeat("l", 65) + "@sender.test>"}, {cmd: "RSET"},
			{cmd: "MAIL FROM:<j\xc3\xb6rg@sender.test>", want: "553", why: "a non-ASCII address without SMTPUTF8 is refused, 553 5.6.7 (RFC 6531 §3.5); Postfix takes it"}, {cmd: "RSET"},
			{cmd: mail}, {cmd: "RCPT TO:<bob@twinmx.test.>"}, {cmd: "RCPT TO:<bob@TWINMX.test>"}}},
		{"pipelined transaction", []step{{cmd: ehlo}, {cmd: mail + "\r\n" + rcpt + "\r\nDATA", replies: 3}, {cmd: msg}}},
		{"dot-stuffed lines and an empty body", []step{{cmd: ehlo}, {cmd: mail}, {cmd: rcpt}, {cmd: "DATA"},
			{cmd: fmt.Sprintf("Subject: dots %d\r\n\r\n..a line with a dot\r\n...\r\n.", time.Now().UnixNano())},
			{cmd: mail}, {cmd: rcpt}, {cmd: "DATA"}, {cmd: fmt.Sprintf("Subject: empty %d\r\n.", time.Now().UnixNano())}}},
		{"message over the SIZE limit", []step{{cmd: ehlo}, {cmd: mail}, {cmd: rcpt}, {cmd: "DATA"},
			{cmd: "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", edgeLimit/1000+2) + "."}, {cmd: "NOOP"}}},
		{"RSET mid-transaction, then a mail", []step{{cmd: ehlo}, {cmd: mail}, {cmd: rcpt}, {cmd: "RSET"}, {cmd: "DATA"}, {cmd: mail}, {cmd: rcpt}, {cmd: "DATA"}, {cmd: msg}}},
	}
	var diffs []string
	for _, ss := range sessions {
		theirs := runSMTPSteps(t, "postfix", pf.addr, ss.steps)
		ours := runSMTPSteps(t, "twinmx", d.addr, ss.steps)
		for i, st := range ss.steps {
			want := theirs[i][:3]
			if st.want != "" {
				want = st.want
			}
			if !strings.HasPrefix(ours[i], want) {
				d := fmt.Sprintf("%s: C: %q\n  postfix: %q\n  twinmx:  %q", ss.name, st.cmd, firstLine(theirs[i]), firstLine(ours[i]))
				if st.why != "" {
					d += fmt.Sprintf("\n  (want %s: %s)", st.want, st.why)
				}
				diffs = append(diffs, d)
			}
		}
	}
	if len(diffs) > 0 {
		t.Errorf("twinmx's smtpd answers differently from Postfix:\n%s", strings.Join(diffs, "\n"))
	}
}

// step is one command of a differential session; want, when set, is the
// reply code twinmx gives instead of Postfix's, and why says why.
type step struct {
	cmd, want, why string
	replies        int // replies to read for a pipelined cmd (default 1); the last is compared
}

// runSMTPSteps dials addr, reads the greeting and sends each step's
// command, and returns each reply (all its lines).
func runSMTPSteps(t *testing.T, name, addr string, steps []step) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	read := func() string {
		var b strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return b.String() + "(connection ended: " + err.Error() + ")"
			}
			b.WriteString(l)
			if len(l) < 4 || l[3] != '-' {
				return b.String()
			}
		}
	}
	if g := read(); !strings.HasPrefix(g, "220") {
		t.Fatalf("%s: greeting %q", name, g)
	}
	var out []string
	for _, s := range steps {
		if _, err := fmt.Fprintf(c, "%s\r\n", s.cmd); err != nil {
			t.Fatalf("%s: %s: %v", name, s.cmd, err)
		}
		var reply string
		for range max(s.replies, 1) {
			reply = read()
		}
		out = append(out, reply)
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}
