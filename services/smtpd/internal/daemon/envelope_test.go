package daemon

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/twinmx/twinmx/pkg/model"
)

func dialGoSMTP(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// sendData sends DATA and raw and returns the reply to the end of data
// (nil for 250).
func sendData(c *smtp.Client, raw []byte) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	return w.Close()
}

// wantCode checks err is the reply code (and enhanced code, unless enh
// is zero); code 250 means no error.
func wantCode(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	switch {
	case code == 250 && err == nil:
	case code == 250:
		t.Fatalf("%s: %v, want 250", what, err)
	case !errors.As(err, &se) || se.Code != code || (enh != smtp.EnhancedCode{} && se.EnhancedCode != enh):
		t.Fatalf("%s: %v, want %d %d.%d.%d", what, err, code, enh[0], enh[1], enh[2])
	}
}

// TestNestedMail: a second MAIL inside a transaction is a sequence error
// (503 5.5.1, RFC 5321 §4.1.4) and the transaction goes on with its first
// sender; after RSET a new MAIL is fine (TEST-CATALOG item 26).
func TestNestedMail(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	e.mailbox("jo@example.org", 0)
	raw := []byte("From: a@x.test\r\nSubject: nested\r\nMessage-ID: <nested@x.test>\r\n\r\nhi\r\n")
	e.decideLater(receiveKey(raw, "jo@example.org"), model.Accept, false)
	c := dialGoSMTP(t, e.addr)
	wantCode(t, "MAIL", c.Mail("first@x.test", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "nested MAIL", c.Mail("second@x.test", nil), 503, smtp.EnhancedCode{5, 5, 1})
	wantCode(t, "RCPT", c.Rcpt("jo@example.org", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "end of data", sendData(c, raw), 250, smtp.EnhancedCode{})
	wantCode(t, "MAIL after DATA", c.Mail("third@x.test", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "RSET", c.Reset(), 250, smtp.EnhancedCode{})
	wantCode(t, "MAIL after RSET", c.Mail("fourth@x.test", nil), 250, smtp.EnhancedCode{})
}

// TestSMTPUTF8Addresses: a non-ASCII address needs the SMTPUTF8 parameter
// on MAIL (553 5.6.7 without it, RFC 6531 §3.6); with it, a valid UTF-8
// address is taken like any other and invalid UTF-8 is a syntax error
// (501). TEST-CATALOG item 30.
func TestSMTPUTF8Addresses(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	e.mailbox("jö@example.org", 0)
	utf8 := &smtp.MailOptions{UTF8: true}

	c := dialGoSMTP(t, e.addr)
	wantCode(t, "MAIL é without SMTPUTF8", c.Mail("é@x.test", nil), 553, smtp.EnhancedCode{5, 6, 7})
	wantCode(t, "MAIL ascii", c.Mail("a@x.test", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "RCPT ö without SMTPUTF8", c.Rcpt("jö@example.org", nil), 553, smtp.EnhancedCode{5, 6, 7})
	wantCode(t, "RSET", c.Reset(), 250, smtp.EnhancedCode{})

	// go-smtp's own path parser already refuses this one (5.5.2).
	wantCode(t, "MAIL invalid UTF-8", c.Mail("\xc3\x28@x.test", utf8), 501, smtp.EnhancedCode{})
	wantCode(t, "MAIL é with SMTPUTF8", c.Mail("é@x.test", utf8), 250, smtp.EnhancedCode{})
	wantCode(t, "RCPT invalid UTF-8", c.Rcpt("j\xc3\x28@example.org", nil), 501, smtp.EnhancedCode{})
	wantCode(t, "RCPT unknown UTF-8 mailbox", c.Rcpt("nö@example.org", nil), 550, smtp.EnhancedCode{5, 1, 1})
	raw := []byte("From: é@x.test\r\nSubject: utf8\r\nMessage-ID: <utf8@x.test>\r\n\r\nhej\r\n")
	e.decideLater(receiveKey(raw, "jö@example.org"), model.Accept, false)
	wantCode(t, "RCPT ö with SMTPUTF8", c.Rcpt("jö@example.org", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "end of data", sendData(c, raw), 250, smtp.EnhancedCode{})
}

// TestHostileHeloInTraceField: a 300-byte HELO name with 8-bit bytes and
// header syntax in it ends up in the stored Received field as one
// well-formed field: printable ASCII, cut to 255 bytes, nothing that ends
// the line or a comment (TEST-CATALOG item 28; control bytes never get
// this far: the guard closes the session).
func TestHostileHeloInTraceField(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	e.mailbox("jo@example.org", 0)
	helo := "évil(" + strings.Repeat("x", 280) + "); X-Injected: 1 <a@b>\xff"
	raw := []byte("From: a@x.test\r\nSubject: helo\r\nMessage-ID: <helo@x.test>\r\n\r\nhi\r\n")
	k := receiveKey(raw, "jo@example.org")
	e.decideLater(k, model.Accept, false)
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCode(t, "HELO", c.Hello(helo), 250, smtp.EnhancedCode{})
	wantCode(t, "MAIL", c.Mail("a@x.test", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "RCPT", c.Rcpt("jo@example.org", nil), 250, smtp.EnhancedCode{})
	wantCode(t, "end of data", sendData(c, raw), 250, smtp.EnhancedCode{})
	stored, _, _ := e.acknowledged(raw, k)
	fs, err := model.ReceivedFields(model.Split(stored).Received)
	if err != nil || len(fs) != 1 {
		t.Fatalf("stored mail has %d Received fields (%v), want ours only:\n%s", len(fs), err, stored)
	}
	f := fs[0].Raw
	for i, line := range strings.Split(strings.TrimSuffix(string(f), "\r\n"), "\r\n") {
		if i > 0 && !strings.HasPrefix(line, "\t") {
			t.Fatalf("line %d of our Received field is not a continuation: %q", i, line)
		}
		for _, c := range []byte(line) {
			if c < 0x20 && c != '\t' || c >= 0x7f {
				t.Fatalf("our Received field has byte %#x: %q", c, f)
			}
		}
	}
	first := strings.SplitN(string(f), "\r\n", 2)[0]
	if strings.Count(first, "(") != 1 || strings.Count(first, ")") != 1 || strings.Contains(first, "X-Injected: 1 <") {
		t.Fatalf("the HELO name broke out of its place: %q", first)
	}
}

// TestPOP3SizeSetAtAck: the acknowledgement carries the mail's size as
// POP3 counts it (model.POP3SizeColumn of the acknowledged delivery's
// received row): the length of the stored mail, which is CRLF-only and
// ends in CRLF, so pop3d lists it without reading it. A bare CR (data
// here) counts one octet.
func TestPOP3SizeSetAtAck(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	e.mailbox("jo@example.org", 0)
	for _, raw := range [][]byte{
		[]byte("From: a@x.test\r\nSubject: size\r\nMessage-ID: <size1@x.test>\r\n\r\nline\r\n..dot\r\n"),
		[]byte("From: a@x.test\r\nSubject: size\r\nMessage-ID: <size2@x.test>\r\n\r\nbare\rCR\r\n"),
	} {
		k := receiveKey(raw, "jo@example.org")
		e.decideLater(k, model.Accept, false)
		if code, msg := e.send("a@x.test", []string{"jo@example.org"}, raw); code != 250 {
			t.Fatalf("%d %s", code, msg)
		}
		stored, rk, st := e.acknowledged(raw, k)
		if got := st.Col(model.POP3SizeColumn(rk)); got != uint64(len(stored)) {
			t.Fatalf("POP3 size column %d, stored mail %d octets", got, len(stored))
		}
		if stored[len(stored)-1] != '\n' || strings.Count(string(stored), "\n") != strings.Count(string(stored), "\r\n") {
			t.Fatalf("stored mail is not CRLF-only with a final CRLF: %q", stored)
		}
	}
}

// TestReturnPath: final delivery adds Return-Path with the envelope sender
// above our Received field (RFC 5321 §4.4): "<>" for a bounce, the address
// as MAIL FROM gave it otherwise, counted in the POP3 size; a Return-Path
// the mail arrived with stays where it was, below ours, and is part of the
// mail's identity as before. With NoReturnPath there is none.
func TestReturnPath(t *testing.T) {
	for _, c := range []struct {
		name, from string
		raw        string
		off        bool
		want       string // what the stored mail begins with
	}{
		{"sender", "a@x.test", "From: a@x.test\r\nSubject: rp\r\nMessage-ID: <rp1@x.test>\r\n\r\nhi\r\n", false, "Return-Path: <a@x.test>\r\nReceived: from "},
		{"bounce", "", "From: MAILER-DAEMON@x.test\r\nSubject: rp\r\nMessage-ID: <rp2@x.test>\r\n\r\nhi\r\n", false, "Return-Path: <>\r\nReceived: from "},
		{"arrived with one", "b@x.test", "Return-Path: <forged@y.test>\r\nFrom: b@x.test\r\nMessage-ID: <rp3@x.test>\r\n\r\nhi\r\n", false, "Return-Path: <b@x.test>\r\nReceived: from "},
		{"off", "a@x.test", "From: a@x.test\r\nSubject: rp\r\nMessage-ID: <rp4@x.test>\r\n\r\nhi\r\n", true, "Received: from "},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, func(cfg *Config) { cfg.MinCopies, cfg.NoReturnPath = 1, c.off })
			e.mailbox("jo@example.org", 0)
			raw := []byte(c.raw)
			k := receiveKey(raw, "jo@example.org")
			e.decideLater(k, model.Accept, false)
			if code, msg := e.send(c.from, []string{"jo@example.org"}, raw); code != 250 {
				t.Fatalf("%d %s", code, msg)
			}
			stored, rk, st := e.acknowledged(raw, k)
			if !bytes.HasPrefix(stored, []byte(c.want)) || !bytes.HasSuffix(stored, raw) {
				t.Fatalf("stored mail\n%q\nwant it to begin with %q and end with what was sent", stored, c.want)
			}
			if got := st.Col(model.POP3SizeColumn(rk)); got != uint64(len(stored)) {
				t.Fatalf("POP3 size column %d, stored mail %d octets", got, len(stored))
			}
			if n := bytes.Count(stored, []byte("Return-Path:")); n != bytes.Count(raw, []byte("Return-Path:"))+map[bool]int{false: 1, true: 0}[c.off] {
				t.Fatalf("%d Return-Path fields in\n%q", n, stored)
			}
		})
	}
}
