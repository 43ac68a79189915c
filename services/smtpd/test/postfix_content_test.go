package test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestPostfixOddContent (TEST-CATALOG item 11): odd content injected over
// SMTP into a real Postfix that relays to smtpd through a tap, which keeps
// the bytes Postfix put on the wire. Every mail must get 250 once, and
// what dbd stores (after smtpd's own Received field) must be byte for
// byte what Postfix sent.
//
// Postfix 3.7 legitimately changes a mail on its way, and the test pins
// exactly how (postfixRelayed): it prepends its Received field; it adds
// Message-Id, Date and From and an empty line to the empty mail (the
// others carry all three); its smtpd drops CRs just before a line end;
// cleanup replaces each other stray CR with a space
// (cleanup_replace_stray_cr_lf, its smuggling defence); its SMTP client
// breaks header and body lines longer than smtp_line_length_limit (998)
// by inserting CRLF SPACE. 8-bit bytes (smtpd offers 8BITMIME), lines of
// a single dot, From_ lines, a header without a body and an empty body
// pass unchanged.
func TestPostfixOddContent(t *testing.T) {
	t.Parallel()
	requirePostfix(t)
	s := newSite(t)
	s.Start()
	const rcpt = "odd@twinmx.test"
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1})
	tp := startTap(t, d.addr)
	p := newPostfix(t, postfixConfig{Relayhost: tp.addr})

	token := fmt.Sprintf("odd-%d", time.Now().UnixNano())
	header := func(name string) string {
		return "From: Alice <alice@sender.test>\r\nTo: odd@twinmx.test\r\nSubject: " + token + "-" + name + "\r\n" +
			"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + name + "." + token + "@sender.test>\r\n"
	}
	long := func(n int, c byte) string { return string(bytes.Repeat([]byte{c}, n)) }
	cases := []struct{ name, msg string }{
		{"long-lines", header("long-lines") + "\r\n" + long(998, 'a') + "\r\n" + long(999, 'b') + "\r\n" +
			long(2048, 'c') + "\r\n" + long(2049, 'd') + "\r\n" + long(5000, 'e') + "\r\n" + long(100000, 'f') + "\r\nend\r\n"},
		{"long-header", header("long-header") + "X-Long: " + long(3000, 'h') + "\r\nX-Folded: one\r\n\t" + long(1500, 'i') +
			"\r\n\r\nshort body\r\n"},
		{"bare-cr", header("bare-cr") + "\r\nline1\rline2\r\nend of line\r\r\nx\r.\ry\r\n\rleading\r\n"},
		{"8bit", strings.Replace(header("8bit"), "Subject: ", "Subject: Grüße ", 1) +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"Grüße aus Köln, 日本語\r\nraw \x80\x81\xfe\xff bytes\r\n"},
		{"dot-lines", header("dot-lines") + "\r\n.\r\n..\r\n. \r\n.x\r\nend\r\n"},
		{"from-lines", header("from-lines") + "\r\nFrom alice@sender.test Sun Nov 29 10:00:00 2026\r\n>From quoted\r\n"},
		{"empty-body", header("empty-body") + "\r\n"},
		{"header-only", header("header-only")},
		{"empty", ""},
	}
	for _, c := range cases {
		p.inject("alice@sender.test", []string{rcpt}, c.msg)
	}
	waitFor(t, 60*time.Second, "Postfix to deliver every mail", func() bool {
		return strings.Count(p.log(), "status=sent") >= len(cases)
	})
	p.waitQueueEmpty(10 * time.Second)

	mails, err := tp.mails()
	if err != nil {
		t.Fatal(err)
	}
	ctx := proctest.Ctx(t, time.Minute)
	for _, c := range cases {
		var m *tapMail
		for i := range mails {
			if c.name == "empty" && !bytes.Contains(mails[i].Data, []byte(token)) ||
				c.name != "empty" && bytes.Contains(mails[i].Data, []byte("Subject: "+token+"-"+c.name+"\r\n")) ||
				c.name == "8bit" && bytes.Contains(mails[i].Data, []byte(token+"-8bit")) {
				// A 4xx before Postfix's retry may be; one 250 must.
				switch r := mails[i].Reply; {
				case r.Code == 250 && m != nil:
					t.Errorf("%s: answered 250 twice", c.name)
				case r.Code == 250:
					m = &mails[i]
				case r.Code < 400 || r.Code >= 500:
					t.Errorf("%s: smtpd answered %v", c.name, r)
				}
			}
		}
		if m == nil {
			t.Errorf("%s: not answered 250 on the wire", c.name)
			continue
		}
		// What Postfix changed, exactly.
		if want, err := postfixRelayed([]byte(c.msg), m.Data); err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if !bytes.Equal(m.Data, want) {
			t.Errorf("%s: Postfix sent other bytes than its documented changes explain: %s", c.name, firstDiff(m.Data, want))
		}
		// What smtpd stored: exactly what Postfix sent.
		stored, err := s.storedMail(ctx, receiveKey(m.Data, rcpt))
		if err != nil {
			t.Errorf("%s: read back: %v", c.name, err)
			continue
		}
		// Final delivery: the envelope sender Postfix relayed, then our
		// Received field, then Postfix's bytes.
		rp, field, rest := stripOurFields(stored)
		if string(rp) != "Return-Path: <alice@sender.test>\r\n" || !bytes.HasPrefix(field, []byte("Received: ")) || !bytes.Contains(field, []byte("mx.twinmx.test")) {
			t.Errorf("%s: the stored mail does not start with smtpd's Return-Path and Received fields: %q", c.name, stored[:min(len(stored), 300)])
		}
		if !bytes.Equal(rest, m.Data) {
			t.Errorf("%s: stored mail differs from what Postfix sent: %s", c.name, firstDiff(rest, m.Data))
		}
	}
	// Each mail is in the mailbox once, acknowledged.
	seen := map[string]int{}
	for _, m := range s.mails(50) {
		if m.Fields["to"] == rcpt {
			seen[m.Key]++
			if m.Fields["ack"] != "yes" {
				t.Errorf("not acknowledged: %v", m)
			}
		}
	}
	if len(seen) != len(cases) {
		t.Errorf("dbd holds %d mails for %s, want %d: %v", len(seen), rcpt, len(cases), seen)
	}
}

// postfixReceived is the Received field Postfix 3.7 prepends to a mail
// it got over SMTP from this test's client (folded over three lines).
var postfixReceived = regexp.MustCompile(`^Received: from client\.test \(localhost \[127\.0\.0\.1\]\)\r\n` +
	`\tby sender\.test \(Postfix\) with E?SMTP id [0-9A-F]+\r\n` +
	`\tfor <odd@twinmx\.test>; [^\r\n]+\r\n`)

// postfixRelayed returns what Postfix 3.7 (this harness's configuration)
// sends for a mail injected as msg: its Received field (taken from sent,
// whose form is checked) and, for an empty msg, the header fields it adds
// and an empty line; else msg with the CRs before a line end dropped
// (Postfix's smtpd strips them with the CRLF), each other stray CR
// replaced by a space, and every line longer than 998 bytes broken by
// CRLF SPACE into lines of at most 998 bytes (the space counts).
func postfixRelayed(msg, sent []byte) ([]byte, error) {
	rcvd := postfixReceived.Find(sent)
	if rcvd == nil {
		return nil, fmt.Errorf("the mail Postfix sent does not start with its Received field: %q", sent[:min(len(sent), 300)])
	}
	out := append([]byte(nil), rcvd...)
	if len(msg) == 0 {
		// The added fields carry the queue time and ID; take them from sent
		// but check their form.
		added := regexp.MustCompile(`^Message-Id: <[0-9]+\.[0-9A-F]+@sender\.test>\r\nDate: [^\r\n]+\r\n` +
			`From: alice@sender\.test\r\n\r\n$`).Find(sent[len(rcvd):])
		if added == nil {
			return nil, fmt.Errorf("Postfix added other fields to the empty mail: %q", sent[len(rcvd):])
		}
		return append(out, added...), nil
	}
	for _, line := range bytes.SplitAfter(msg, []byte("\r\n")) {
		body := bytes.TrimSuffix(line, []byte("\r\n"))
		end := line[len(body):]
		body = bytes.TrimRight(body, "\r")
		body = bytes.ReplaceAll(body, []byte("\r"), []byte(" "))
		for n := 998; len(body) > n; n = 997 {
			out = append(out, body[:n]...)
			out = append(out, "\r\n "...)
			body = body[n:]
		}
		out = append(out, body...)
		out = append(out, end...)
	}
	return out, nil
}
