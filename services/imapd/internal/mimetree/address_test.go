package mimetree

import (
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

func fmtAddrs(l []imap.Address) string {
	var b strings.Builder
	for _, a := range l {
		fmt.Fprintf(&b, "[%s|%s|%s]", a.Name, a.Mailbox, a.Host)
	}
	return b.String()
}

// TestAddressList pins how address fields read, the awkward ones above
// all; most rows are forms found in the corpus, where go-message's
// parser lost the whole list.
func TestAddressList(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`a@b.c`, `[|a|b.c]`},
		{`"Ann Other" <ann@b.c>, bob@d.e (Bob D)`, `[Ann Other|ann|b.c][Bob D|bob|d.e]`},
		{`John Q. Public <jqp@x.org>`, `[John Q. Public|jqp|x.org]`},
		{`=?utf-8?q?J=C3=B6rg?= <j@x.org>`, `[=?utf-8?q?J=C3=B6rg?=|j|x.org]`},
		// Groups: RFC 9051 §7.5.2 markers around the members.
		{`undisclosed-recipients:;`, `[|undisclosed-recipients|][||]`},
		{`Team: a@x.org, "B" <b@x.org>; c@y.org`, `[|Team|][|a|x.org][B|b|x.org][||][|c|y.org]`},
		// 8-bit names that are not UTF-8 are read as Latin-1.
		{"\"Nils O. Sel\xe5sdal\" <n@utel.no>", `[Nils O. Selåsdal|n|utel.no]`},
		{"Jörg <j@x.org>", `[Jörg|j|x.org]`},
		// Local parts: quoted, dots anywhere.
		{`<"Books@Books"@Black.com>`, `[|Books@Books|Black.com]`},
		{`<....@x.org>`, `[|....|x.org]`},
		{`Gat.cash.out.@x.org`, `[|Gat.cash.out.|x.org]`},
		{`<@relay.org,@r2.org:u@x.org>`, `[|u|x.org]`}, // a source route
		{`u@[10.0.0.1]`, `[|u|[10.0.0.1]]`},
		// Missing parts show as placeholders, never as a group marker.
		{`"" <>`, `[|MISSING_MAILBOX|MISSING_DOMAIN]`},
		{`@neto.net`, `[|MISSING_MAILBOX|neto.net]`},
		{`karsten@web.de.`, `[|karsten|MISSING_DOMAIN]`},
		{`foo`, `[|foo|MISSING_DOMAIN]`},
		{`foo, bar@x.org`, `[|foo|MISSING_DOMAIN][|bar|x.org]`},
		// What cannot be read ends the list with what was read of it.
		{`<Undisclosed Recipients@x.org>, a@b.c`, `[|Undisclosed|SYNTAX_ERROR]`},
		{`<Undisclosed-Recipient:;@x.org>`, `[|Undisclosed-Recipient|SYNTAX_ERROR]`},
		{`"Bannedcd"eowu345@yahoo.com`, `[Bannedcd eowu345|MISSING_MAILBOX|MISSING_DOMAIN]`},
		{`oolas@Cybertizens@msn.net`, `[|oolas|Cybertizens]`},
		{`<a@x.org>knoshaug.com, <b@x.org>`, `[|a|x.org]`},
		{`u@[1.2.3.4] [ufa]`, `[|u|[1.2.3.4]]`},
		// Comments, folding, quoted pairs.
		{"a@b.c (first),\r\n\t(note) \"x\\\"y\" <c@d.e>", `[first|a|b.c][x"y|c|d.e]`},
		{`(only a comment)`, ``},
		{``, ``},
		{`,,, ,`, ``},
	} {
		if got := fmtAddrs(addressList(c.in, 0)); got != c.want {
			t.Errorf("addressList(%q)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	if got := fmtAddrs(addressList(`a@x.org, b@y.org`, 1)); got != `[|a|x.org]` {
		t.Errorf("at most 1: %s", got)
	}
}

// TestEnvelopeFieldOrder: a field given several times is read in full,
// in header order (go-message lists such fields last first), and Sender
// holds one mailbox.
func TestEnvelopeFieldOrder(t *testing.T) {
	h := ParseHeader([]byte("From: a@x.org\r\nCc: c1@x.org\r\nSender: s1@x.org, s2@x.org\r\nCc: c2@x.org, c3@x.org\r\nCc: c4@x.org\r\n\r\n"))
	e := Envelope(h)
	if got := fmtAddrs(e.Cc); got != `[|c1|x.org][|c2|x.org][|c3|x.org][|c4|x.org]` {
		t.Errorf("Cc = %s", got)
	}
	if got := fmtAddrs(e.Sender); got != `[|s1|x.org]` {
		t.Errorf("Sender = %s", got)
	}
	if e.To != nil || e.ReplyTo != nil {
		t.Errorf("absent fields: To %v, Reply-To %v; want nil (the writer defaults Reply-To to From)", e.To, e.ReplyTo)
	}
	var empty textproto.Header
	empty.Add("To", "")
	if e := Envelope(empty); len(e.To) != 0 {
		t.Errorf("empty To = %s", fmtAddrs(e.To))
	}
}

// FuzzAddressList: any input reads without panic, in bounded output, and
// every address but a group marker has a mailbox and a host (a NIL host
// would make a client take it for a group marker).
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		`a@b.c`, `"A" <a@b.c>, b@c.d (B)`, `g: a@b.c, <d@e.f>; x@y.z`, `"" <>`,
		`<Undisclosed Recipients@x.org>`, "\"S\xe9b\" <s@x.org>", `<@r.org:u@x.org>`,
		`(a (nested) comment) u@[1.2.3.4]`, `"unterminated`, `(unterminated`, `<a@b`, `a:b:c;;;`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l := addressList(s, 0)
		if len(l) > len(s)+1 {
			t.Fatalf("%d addresses from %d bytes", len(l), len(s))
		}
		depth := 0
		for _, a := range l {
			switch {
			case a.Host == "" && a.Mailbox != "" && a.Name == "":
				depth++ // group start
			case a == imap.Address{}:
				depth-- // group end
			case a.Mailbox == "" || a.Host == "":
				t.Fatalf("address %+v of %q lacks a mailbox or host", a, s)
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("unbalanced group markers in %s of %q", fmtAddrs(l), s)
			}
		}
	})
}

// TestEnvelopeText: Date, Subject, In-Reply-To and Message-ID are the
// text of the first field of the name, unfolded; absent is nil, empty is
// "" (RFC 9051 §7.5.2).
func TestEnvelopeText(t *testing.T) {
	h := ParseHeader([]byte("Subject: first\r\n  folded\tline \r\nDate: Fri, 23 Aug 2002 19:27:52\r\n" +
		"In-Reply-To: <a@b>; from\r\n    me \r\nMessage-ID: PM200011:12:45 AM\r\nSubject: second\r\n\r\n"))
	e := Envelope(h)
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return fmt.Sprintf("%q", *p)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Subject", str(e.Text.Subject), `"first folded line"`},
		{"Date", str(e.Text.Date), `"Fri, 23 Aug 2002 19:27:52"`},
		{"In-Reply-To", str(e.Text.InReplyTo), `"<a@b>; from    me "`},
		{"Message-ID", str(e.Text.MessageID), `"PM200011:12:45 AM"`},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	e = Envelope(ParseHeader([]byte("Subject:\r\nFrom: a@b.c\r\n\r\n")))
	if str(e.Text.Subject) != `""` || e.Text.Date != nil || e.Text.MessageID != nil || e.Text.InReplyTo != nil {
		t.Errorf("empty Subject %s (want \"\"), absent Date %s, Message-ID %s, In-Reply-To %s (want <nil>)",
			str(e.Text.Subject), str(e.Text.Date), str(e.Text.MessageID), str(e.Text.InReplyTo))
	}
}

// TestParseMediaTypeKeepsGoodParams: one bad parameter does not take the
// others with it (Go's parser returns none then).
func TestParseMediaTypeKeepsGoodParams(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`application/octet-stream; charset=iso-8859-1; file=Yinxiang Motorcycles.doc`, `application/octet-stream charset=iso-8859-1 file=Yinxiang`},
		{`multipart/mixed; name=a b c; boundary="=_x;y"`, `multipart/mixed boundary==_x;y name=a`},
		{`multipart/mixed; @@@; boundary=b`, `multipart/mixed boundary=b`},
		{`text/plain; title*0*=us-ascii'en'a%20; title*1=b; junk=x y`, `text/plain junk=x title=a b`},
		{`text/plain; a=1; a=2`, `text/plain a=1`}, // the first of a name given twice
		{`multipart/mixed; boundary=x; BOUNDARY=y`, `multipart/mixed boundary=x`},
		{`text/plain; charset=utf-8`, `text/plain charset=utf-8`},
	} {
		mt, params, err := parseMediaType(c.in)
		got := mt
		for _, k := range slices.Sorted(maps.Keys(params)) {
			got += " " + k + "=" + params[k]
		}
		if err != nil || got != c.want {
			t.Errorf("parseMediaType(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzParseMediaType(f *testing.F) {
	for _, s := range []string{`text/plain; charset=utf-8`, `multipart/mixed; name=a b; boundary="x"`, `a/b; c*0*=utf-8''%41; c*1=b`, `x/y; "`, `;;;`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseMediaType(s) // must not panic; Go's parser is the reference for good input
		if mt, p, err := mime.ParseMediaType(s); err == nil {
			mt2, p2, err2 := parseMediaType(s)
			if err2 != nil || mt2 != mt || !maps.Equal(p, p2) {
				t.Fatalf("%q: good input read differently: %q %v %v", s, mt2, p2, err2)
			}
		}
	})
}
