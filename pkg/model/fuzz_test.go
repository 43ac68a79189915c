package model

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the f.Add seeds below
// cover the shapes the splitter must tell apart.

func FuzzSplitJoin(f *testing.F) {
	for _, s := range []string{
		"",
		"\n",
		"\r\n",
		"Subject: a\n\nbody\n",
		"Received: a\n\tb\nSubject: x\r\n\r\nReceived: in body",
		"From a@b  Thu Aug 22 12:36:23 2002\nReceived: r\nMessage-ID: <m@x>\n\nb",
		"Subject: a\nReceived: open",
		" lead\nreceived \t: x\n\n",
		"S\x00: \xff\rReceived: no\n\r\n\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := Split(raw)
		got, err := Join(p)
		if err != nil {
			t.Fatalf("Join(Split(%q)): %v", raw, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("Join(Split(%q)) = %q", raw, got)
		}
		fs, err := ReceivedFields(p.Received)
		if err != nil {
			t.Fatalf("ReceivedFields(Split(%q).Received): %v", raw, err)
		}
		if n := ReceivedCount(raw); n != len(fs) {
			t.Fatalf("ReceivedCount(%q) = %d, Split found %d", raw, n, len(fs))
		}
		if hl := HeaderSectionLen(raw); hl != len(raw)-len(p.Body) {
			t.Fatalf("HeaderSectionLen(%q) = %d, Split's body starts at %d", raw, hl, len(raw)-len(p.Body))
		}
		if again := Split(p.Header); len(again.Received) != 0 || !bytes.Equal(again.Header, p.Header) || len(again.Body) != 0 {
			t.Fatalf("Split(%q).Header is not a Received-free header section", raw)
		}
		// The mail as smtpd stores it (its Return-Path and Received fields
		// in the received row), exported and cut of that Return-Path, has
		// raw's identity again: what dbctl import looks for.
		q, err := p.WithTrace([]byte("Received: from c by mx; now\r\n"))
		if err == nil {
			q, err = q.WithTrace([]byte("Return-Path: <a@b>\r\n"))
		}
		if len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
			// It would continue our field: WithTrace refuses, smtpd too.
			if !errors.Is(err, ErrBadReceived) {
				t.Fatalf("WithTrace before a leading continuation line %q: %v", raw, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("WithTrace on Split(%q): %v", raw, err)
		}
		exported, err := Join(q)
		if err != nil {
			t.Fatalf("smtpd's fields before %q do not join: %v", raw, err)
		}
		if want := "Return-Path: <a@b>\r\nReceived: from c by mx; now\r\n" + string(raw); string(exported) != want {
			t.Fatalf("smtpd's fields before %q join to %q", raw, exported)
		}
		rest, ok := CutReturnPath(exported)
		if r := Split(rest); !ok || !bytes.Equal(r.Header, p.Header) || !bytes.Equal(r.Body, p.Body) {
			t.Fatalf("CutReturnPath of %q exported: %v, %q", raw, ok, rest)
		}
	})
}

// FuzzJoin feeds Join arbitrary parts. Join must never panic, and whenever it
// accepts parts that Split could have produced (a Received-free header
// section, a body only after a separator), splitting its output must give
// back exactly those parts: Join accepts no encoding that Split would not
// produce.
func FuzzJoin(f *testing.F) {
	f.Add([]byte("A: b\n\n"), rec(0, "Received: r\n"), []byte("body"))
	f.Add([]byte("A: b"), rec(1, "Received: r\n"), []byte(""))
	f.Add([]byte(" x\n"), rec(0, "Received: r\n"), []byte(""))
	f.Add([]byte(""), rec(0, "Received: open"), []byte(""))
	f.Add([]byte("A: b\n\n"), cat(rec(0, "Return-Path: <a@b>\r\n"), rec(1, "Received: r\n")), []byte("body"))
	f.Add([]byte("A: b\nC: d\n"), cat(rec(0, "received: 1\n"), rec(2, "RECEIVED: 2\n x\n"), rec(4, "Received :3")), []byte(""))
	f.Fuzz(func(t *testing.T, header, received, body []byte) {
		out, err := Join(Parts{Header: header, Received: received, Body: body})
		if err != nil {
			if !errors.Is(err, ErrBadReceived) {
				t.Fatalf("Join error %v does not wrap ErrBadReceived", err)
			}
			return
		}
		h := Split(header)
		if len(h.Received) != 0 || len(h.Body) != 0 {
			return // not a header section Split could produce
		}
		if len(body) > 0 && !isSeparatorLine(header) {
			return // a body without a separator would be read as header
		}
		if fs, _ := ReceivedFields(received); slices.ContainsFunc(fs, func(f ReceivedField) bool { return !isReceived(f.Raw) }) {
			return // a Return-Path record (WithTrace's): Split keeps the field in the header
		}
		p := Split(out)
		if !bytes.Equal(p.Header, header) || !bytes.Equal(p.Received, received) || !bytes.Equal(p.Body, body) {
			t.Fatalf("Split(Join(%q, %q, %q)) = %q, %q, %q", header, received, body, p.Header, p.Received, p.Body)
		}
	})
}

// isSeparatorLine reports whether header ends with its separator line.
func isSeparatorLine(header []byte) bool {
	return bytes.Equal(header, []byte("\n")) || bytes.Equal(header, []byte("\r\n")) ||
		bytes.HasSuffix(header, []byte("\n\n")) || bytes.HasSuffix(header, []byte("\n\r\n"))
}

func FuzzDecodeState(f *testing.F) {
	var s State
	s.Set("verdict", EncodeVerdict(SourceOperator, 3, Accept))
	s.Set(ColDeleted, FlagSet)
	s.Add("n", "site-a", 5)
	s.Add("n", "site-b", 1<<40)
	f.Add(s.AppendBinary(nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{0x00, 0x80, 0x00})
	f.Add([]byte{0x01, 0x01, 'a', 0x01, 0x00, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeState(t, b)
	})
}

func FuzzParseMailContent(f *testing.F) {
	f.Add(MailContent(KeyOf(Header, []byte("h")), KeyOf(Body, []byte("b"))))
	f.Add([]byte{})
	f.Add(make([]byte, 65))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, bd, err := ParseMailContent(b)
		if err != nil {
			if !errors.Is(err, ErrBadContent) || len(b) == PairContentSize {
				t.Fatalf("ParseMailContent(%x) = %v", b, err)
			}
		} else if !bytes.Equal(MailContent(h, bd), b) {
			t.Fatalf("MailContent(ParseMailContent(%x)) differs", b)
		}
		m, mb, err := ParseReceiveContent(b)
		if (err == nil) != (len(b) == PairContentSize) {
			t.Fatalf("ParseReceiveContent(%x) error = %v", b, err)
		}
		if err == nil && !bytes.Equal(ReceiveContent(m, mb), b) {
			t.Fatalf("ReceiveContent(ParseReceiveContent(%x)) differs", b)
		}
	})
}

// FuzzCRLF: CRLF leaves no LF without its CR, and taking out the CRs it
// added gives the input back.
func FuzzCRLF(f *testing.F) {
	for _, s := range []string{"", "a\nb", "a\r\nb\n", "\r\r\n\n", "x\ry\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := CRLF(raw)
		for i, b := range out {
			if b == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("CRLF(%q) = %q: bare LF at %d", raw, out, i)
			}
		}
		if len(out)-len(raw) != bytes.Count(out, []byte("\r\n"))-bytes.Count(raw, []byte("\r\n")) {
			t.Fatalf("CRLF(%q) = %q: added more than a CR per bare LF", raw, out)
		}
		if !bytes.Equal(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("CRLF(%q) = %q: content changed", raw, out)
		}
	})
}
