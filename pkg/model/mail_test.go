package model

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// rec builds one record of the Received encoding for test expectations.
func rec(index int, field string) []byte {
	return appendRecord(nil, index, []byte(field))
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestSplit(t *testing.T) {
	long := strings.Repeat("a", MaxMsgIDLen+1)
	tests := []struct {
		name     string
		in       string
		header   string
		received []byte
		body     string
		msgID    string
	}{
		{name: "empty", in: ""},
		{name: "body only LF", in: "\nhello\n", header: "\n", body: "hello\n"},
		{name: "body only CRLF", in: "\r\nhello", header: "\r\n", body: "hello"},
		{name: "no separator", in: "Subject: a\nFrom: b", header: "Subject: a\nFrom: b"},
		{name: "no colon", in: "hello world\n\nbody", header: "hello world\n\n", body: "body"},
		{
			name:     "received first and folded",
			in:       "Received: from a\n\tby b\nSubject: x\n\nbody\n",
			header:   "Subject: x\n\n",
			received: rec(0, "Received: from a\n\tby b\n"),
			body:     "body\n",
		},
		{
			name:     "case, WSP before colon, CRLF",
			in:       "From: a\r\nRECEIVED \t: x\r\n y\r\nreceived:z\r\nTo: b\r\n\r\nReceived: in body\r\n",
			header:   "From: a\r\nTo: b\r\n\r\n",
			received: cat(rec(1, "RECEIVED \t: x\r\n y\r\n"), rec(2, "received:z\r\n")),
			body:     "Received: in body\r\n",
		},
		{
			name:   "look-alikes are not Received",
			in:     "Received-SPF: pass\nX-Received: a\nReceivedx: b\nReceived\n\n",
			header: "Received-SPF: pass\nX-Received: a\nReceivedx: b\nReceived\n\n",
		},
		{
			name:     "mbox From line",
			in:       "From a@b  Thu Aug 22 12:36:23 2002\nReceived: r\nMessage-Id: <X@Y>\n\nb",
			header:   "From a@b  Thu Aug 22 12:36:23 2002\nMessage-Id: <X@Y>\n\n",
			received: rec(1, "Received: r\n"),
			body:     "b",
			msgID:    "X@Y",
		},
		{
			name:     "last field without line end",
			in:       "Subject: a\nReceived: r",
			header:   "Subject: a\n",
			received: rec(1, "Received: r"),
		},
		{
			name:   "bare CR does not end a line",
			in:     "Subject: a\rReceived: r\n\rx\n\nb",
			header: "Subject: a\rReceived: r\n\rx\n\n",
			body:   "b",
		},
		{
			name:   "leading continuation line",
			in:     " x\n\ty\nA: b\n\n",
			header: " x\n\ty\nA: b\n\n",
		},
		{
			name:   "whitespace-only line is a continuation, not the separator",
			in:     "A: b\n \nC: d\n\nbody",
			header: "A: b\n \nC: d\n\n",
			body:   "body",
		},
		{
			name:   "folded Message-ID with comment",
			in:     "Message-ID: (c)\r\n  <a.b@c> \r\nMessage-ID: <second@x>\r\n\r\n",
			header: "Message-ID: (c)\r\n  <a.b@c> \r\nMessage-ID: <second@x>\r\n\r\n",
			msgID:  "a.b@c",
		},
		// A comment before the msg-id (RFC 5322 §3.6.4: [CFWS] "<" ...)
		// may hold a '<': the id was taken from inside the comment.
		{
			name:   "Message-ID after a comment holding <",
			in:     "Message-ID: (was <old@x>)\r\n (\\(<) <new@x>\r\n\r\n",
			header: "Message-ID: (was <old@x>)\r\n (\\(<) <new@x>\r\n\r\n",
			msgID:  "new@x",
		},
		{name: "first usable Message-ID", in: "Message-ID: <>\nMessage-ID: <b@x>\nMessage-ID: <c@x>\n\n", header: "Message-ID: <>\nMessage-ID: <b@x>\nMessage-ID: <c@x>\n\n", msgID: "b@x"},
		{name: "Message-ID without brackets", in: "message-id:  id@x \n", header: "message-id:  id@x \n", msgID: "id@x"},
		{name: "Message-ID empty", in: "Message-ID: <>\n\n", header: "Message-ID: <>\n\n"},
		{name: "Message-ID too long", in: "Message-ID: <" + long + ">\n", header: "Message-ID: <" + long + ">\n"},
		{name: "Message-ID unterminated", in: "Message-ID: <a@b\n", header: "Message-ID: <a@b\n", msgID: "<a@b"},
		{name: "NUL and 8-bit", in: "S\x00: \xff\xfe\nReceived: \x00\n\n\xff", header: "S\x00: \xff\xfe\n\n", received: rec(1, "Received: \x00\n"), body: "\xff"},
		{name: "separator then more blank lines", in: "A: b\n\n\n\n", header: "A: b\n\n", body: "\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Split([]byte(tt.in))
			if string(p.Header) != tt.header {
				t.Errorf("Split(%q).Header = %q, want %q", tt.in, p.Header, tt.header)
			}
			if !bytes.Equal(p.Received, tt.received) {
				t.Errorf("Split(%q).Received = %q, want %q", tt.in, p.Received, tt.received)
			}
			if string(p.Body) != tt.body {
				t.Errorf("Split(%q).Body = %q, want %q", tt.in, p.Body, tt.body)
			}
			if p.MessageID != tt.msgID {
				t.Errorf("Split(%q).MessageID = %q, want %q", tt.in, p.MessageID, tt.msgID)
			}
			got, err := Join(p)
			if err != nil || string(got) != tt.in {
				t.Errorf("Join(Split(%q)) = %q, %v; want the input", tt.in, got, err)
			}
		})
	}
}

func TestJoinErrors(t *testing.T) {
	tests := []struct {
		name     string
		header   string
		received []byte
		body     string
		// fits is set when the encoding is well-formed by itself and only
		// fails against this header or body.
		fits bool
	}{
		{name: "truncated varint", header: "A: b\n", received: []byte{0x80}},
		{name: "non-minimal index", header: "A: b\n", received: cat([]byte{0x80, 0x00, 12}, []byte("Received: r\n"))},
		{name: "non-minimal length", header: "A: b\n", received: cat([]byte{0, 0x8c, 0x00}, []byte("Received: r\n"))},
		{name: "length beyond end", header: "A: b\n", received: []byte{0, 50, 'R'}},
		{name: "huge index", header: "A: b\n", received: cat([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 12}, []byte("Received: r\n"))},
		{name: "not a header field", header: "A: b\n", received: rec(0, "no colon here\n")},
		{name: "an mbox From line", header: "A: b\n", received: rec(0, "From a@b Thu Aug 22 12:36:23 2002\n")},
		{name: "no field name", header: "A: b\n", received: rec(0, ": r\n")},
		{name: "two fields in one record", header: "A: b\n", received: rec(0, "Received: a\nReceived: b\n")},
		{name: "empty record", header: "A: b\n", received: rec(0, "")},
		{name: "indices not increasing", header: "A: b\n", received: cat(rec(1, "Received: a\n"), rec(1, "Received: b\n"))},
		{name: "indices decreasing", header: "A: b\n", received: cat(rec(2, "Received: a\n"), rec(0, "Received: b\n"))},
		{name: "index beyond fields", header: "A: b\n\n", received: rec(2, "Received: a\n"), fits: true},
		{name: "open record not last", header: "A: b\n", received: rec(0, "Received: a"), fits: true},
		{name: "open record before body", header: "", received: rec(0, "Received: a"), body: "x", fits: true},
		// Found by FuzzJoin: an open record followed by a header field and
		// another record was accepted, gluing the field to it.
		{name: "open record before field and record", header: "0\n0\n", received: cat(rec(0, "Received:0"), rec(2, "Received:1\n")), fits: true},
		{name: "after field without line end", header: "A: b", received: rec(1, "Received: a\n"), fits: true},
		{name: "before continuation line", header: " x\n", received: rec(0, "Received: a\n"), fits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parts{Header: []byte(tt.header), Received: tt.received, Body: []byte(tt.body)}
			got, err := Join(p)
			if !errors.Is(err, ErrBadReceived) {
				t.Errorf("Join(%q, %q) = %q, %v; want ErrBadReceived", tt.header, tt.received, got, err)
			}
			if _, err := ReceivedFields(tt.received); (err == nil) != tt.fits {
				t.Errorf("ReceivedFields(%q) error = %v, want error: %v", tt.received, err, !tt.fits)
			}
		})
	}
}

func TestReceivedFields(t *testing.T) {
	raw := []byte("Received: a\nSubject: s\nreceived : b\n c\n\nbody")
	fs, err := ReceivedFields(Split(raw).Received)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReceivedField{{0, []byte("Received: a\n")}, {2, []byte("received : b\n c\n")}}
	if len(fs) != len(want) {
		t.Fatalf("ReceivedFields = %d fields, want %d", len(fs), len(want))
	}
	for i := range fs {
		if fs[i].Index != want[i].Index || !bytes.Equal(fs[i].Raw, want[i].Raw) {
			t.Errorf("field %d = {%d %q}, want {%d %q}", i, fs[i].Index, fs[i].Raw, want[i].Index, want[i].Raw)
		}
	}
	if fs, err := ReceivedFields(nil); err != nil || fs != nil {
		t.Errorf("ReceivedFields(nil) = %v, %v; want nil, nil", fs, err)
	}
}

// adversarialMail draws byte strings built from the tokens that matter to
// the splitter, mixed with arbitrary bytes.
func adversarialMail() *rapid.Generator[[]byte] {
	tokens := []string{
		"\n", "\r\n", "\r", " ", "\t", ":", "a", "\x00", "\xff",
		"Received:", "received \t:", "RECEIVED:", "Received", "Received-SPF:",
		"From ", "Message-ID:", "<", ">", "X-A: b\n", "Received: x\n", "\n\n", "\r\n\r\n",
	}
	tok := rapid.OneOf(rapid.SampledFrom(tokens), rapid.Map(rapid.Byte(), func(b byte) string { return string([]byte{b}) }))
	return rapid.OneOf(
		rapid.Map(rapid.SliceOf(tok), func(ts []string) []byte { return []byte(strings.Join(ts, "")) }),
		rapid.SliceOf(rapid.Byte()),
	)
}

func TestSplitJoinProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		raw := adversarialMail().Draw(t, "raw")
		p := Split(raw)
		got, err := Join(p)
		if err != nil {
			t.Fatalf("Join(Split(%q)): %v", raw, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("Join(Split(%q)) = %q", raw, got)
		}
		if _, err := ReceivedFields(p.Received); err != nil {
			t.Fatalf("ReceivedFields(Split(%q).Received): %v", raw, err)
		}
		// Splitting is stable: the header holds no Received field any more.
		if again := Split(p.Header); len(again.Received) != 0 || !bytes.Equal(again.Header, p.Header) || len(again.Body) != 0 {
			t.Fatalf("Split(Split(%q).Header) = %+v", raw, again)
		}
		if MsgIDContent(p.MessageID) != nil && string(MsgIDContent(p.MessageID)) != p.MessageID {
			t.Fatalf("MsgIDContent(%q) = %q, not idempotent", p.MessageID, MsgIDContent(p.MessageID))
		}
	})
}

// TestIdentityIgnoresReceived checks SPEC §1: two mails that differ only in
// their Received fields (count, content, position) have the same header and
// body, hence the same mail key.
func TestIdentityIgnoresReceived(t *testing.T) {
	names := []string{"Subject", "From", "To", "Received-SPF", "X-Received", "Message-ID", "DKIM-Signature"}
	rapid.Check(t, func(t *rapid.T) {
		eol := rapid.SampledFrom([]string{"\n", "\r\n"})
		value := rapid.StringMatching(`[ -~\x80-\xff]{0,12}`)
		field := func(name string) string {
			f := name + ":" + value.Draw(t, "value") + eol.Draw(t, "eol")
			for i := rapid.IntRange(0, 2).Draw(t, "folds"); i > 0; i-- {
				f += rapid.SampledFrom([]string{" ", "\t"}).Draw(t, "wsp") + value.Draw(t, "cont") + eol.Draw(t, "eol")
			}
			return f
		}
		type piece struct {
			s        string
			received bool
		}
		var pieces []piece
		for i := rapid.IntRange(0, 6).Draw(t, "nfields"); i > 0; i-- {
			pieces = append(pieces, piece{s: field(rapid.SampledFrom(names).Draw(t, "name"))})
		}
		for i := rapid.IntRange(0, 4).Draw(t, "nreceived"); i > 0; i-- {
			at := rapid.IntRange(0, len(pieces)).Draw(t, "at")
			name := rapid.SampledFrom([]string{"Received", "received", "RECEIVED ", "Received\t"}).Draw(t, "rname")
			pieces = append(pieces[:at], append([]piece{{s: field(name), received: true}}, pieces[at:]...)...)
		}
		tail := ""
		if rapid.Bool().Draw(t, "separator") {
			tail = eol.Draw(t, "sep") + string(rapid.SliceOf(rapid.Byte()).Draw(t, "body"))
		} else if len(pieces) > 0 && rapid.Bool().Draw(t, "open") {
			// Without a separator the mail may end inside its last field.
			last := &pieces[len(pieces)-1]
			last.s = strings.TrimSuffix(strings.TrimSuffix(last.s, "\n"), "\r")
		}
		var with, without strings.Builder
		for _, p := range pieces {
			with.WriteString(p.s)
			if !p.received {
				without.WriteString(p.s)
			}
		}
		with.WriteString(tail)
		without.WriteString(tail)

		a, b := Split([]byte(with.String())), Split([]byte(without.String()))
		if !bytes.Equal(a.Header, b.Header) || !bytes.Equal(a.Body, b.Body) {
			t.Fatalf("Received fields changed the identity:\n with    %q -> %q + %q\n without %q -> %q + %q",
				with.String(), a.Header, a.Body, without.String(), b.Header, b.Body)
		}
		if len(b.Received) != 0 {
			t.Fatalf("Split(%q).Received = %q, want none", without.String(), b.Received)
		}
		if NewMailRows([]byte(with.String())).MailKey != NewMailRows([]byte(without.String())).MailKey {
			t.Fatalf("mail keys differ for %q and %q", with.String(), without.String())
		}
		if got, err := Join(a); err != nil || string(got) != with.String() {
			t.Fatalf("Join(Split(%q)) = %q, %v", with.String(), got, err)
		}
	})
}

func TestPairContent(t *testing.T) {
	h, b := KeyOf(Header, []byte("h")), KeyOf(Body, []byte("b"))
	c := MailContent(h, b)
	if len(c) != PairContentSize {
		t.Fatalf("len(MailContent) = %d", len(c))
	}
	gh, gb, err := ParseMailContent(c)
	if err != nil || gh != h || gb != b {
		t.Errorf("ParseMailContent(MailContent(h, b)) = %v, %v, %v", gh, gb, err)
	}
	m, mb, err := ParseReceiveContent(ReceiveContent(b, h))
	if err != nil || m != b || mb != h {
		t.Errorf("ParseReceiveContent(ReceiveContent(b, h)) = %v, %v, %v", m, mb, err)
	}
	for _, n := range []int{0, 63, 65} {
		if _, _, err := ParseMailContent(make([]byte, n)); !errors.Is(err, ErrBadContent) {
			t.Errorf("ParseMailContent(%d bytes) error = %v, want ErrBadContent", n, err)
		}
		if _, _, err := ParseReceiveContent(make([]byte, n)); !errors.Is(err, ErrBadContent) {
			t.Errorf("ParseReceiveContent(%d bytes) error = %v, want ErrBadContent", n, err)
		}
	}
}

func TestMailboxContent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Jo@Example.COM", "Jo@example.com"},
		{" <Jo@Example.COM> ", "Jo@example.com"},
		{`"A@B"@EXAMPLE.org`, `"A@B"@example.org`},
		{"PostMaster@Example.com", "postmaster@example.com"},
		{"POSTMASTER", "postmaster"},
		{"user", "user"},
		{"user@Bücher.DE", "user@bücher.de"}, // only ASCII is folded
		// Not postmaster: U+017F folds to "s" only under Unicode rules, so
		// this local part keeps its case.
		{"Poſtmaster@Example.com", "Poſtmaster@example.com"},
		{"POSTMASTEK@x", "POSTMASTEK@x"}, // U+212A KELVIN SIGN
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(MailboxContent(tt.in)); got != tt.want {
			t.Errorf("MailboxContent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMsgIDContent(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
	}{
		{"<a@b>", []byte("a@b")},
		{"a@b", []byte("a@b")},
		{" <A@B> ", []byte("A@B")},
		{"<>", nil},
		{"(old <a@b>) <c@d>", []byte("c@d")},
		{"(unclosed <a@b>", []byte("a@b")},
		{"", nil},
	}
	for _, tt := range tests {
		if got := MsgIDContent(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("MsgIDContent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewMailRows(t *testing.T) {
	raw := []byte("Received: r\nMessage-ID: <m@x>\nSubject: s\n\nbody\n")
	r := NewMailRows(raw)
	if r.HeaderKey != KeyOf(Header, []byte("Message-ID: <m@x>\nSubject: s\n\n")) {
		t.Error("HeaderKey is not the key of the header without Received")
	}
	if r.BodyKey != KeyOf(Body, []byte("body\n")) {
		t.Error("BodyKey is not the key of the body")
	}
	if !bytes.Equal(r.Mail, MailContent(r.HeaderKey, r.BodyKey)) || r.MailKey != KeyOf(Mail, r.Mail) {
		t.Error("Mail/MailKey do not reference header and body")
	}
	if !bytes.Equal(r.Received, rec(0, "Received: r\n")) || r.ReceivedKey != KeyOf(Received, r.Received) {
		t.Errorf("Received = %q", r.Received)
	}
	if string(r.MsgID) != "m@x" || r.MsgIDKey != KeyOf(MsgID, []byte("m@x")) {
		t.Errorf("MsgID = %q", r.MsgID)
	}
	if r := NewMailRows([]byte("Subject: s\n\n")); r.MsgID != nil || !r.MsgIDKey.IsZero() {
		t.Errorf("mail without Message-ID: MsgID = %q, key %v", r.MsgID, r.MsgIDKey)
	}
}

func BenchmarkSplit(b *testing.B) {
	var raw bytes.Buffer
	raw.WriteString("From sender@example.org  Thu Aug 22 12:36:23 2002\n")
	for i := range 8 {
		raw.WriteString("Received: from relay" + strings.Repeat("x", i) + ".example.org (relay.example.org [192.0.2.1])\n\tby mx.example.com with ESMTPS id abc; Thu, 22 Aug 2002 12:36:23 +0000\n")
	}
	raw.WriteString("Message-ID: <1234@example.org>\nFrom: a@example.org\nTo: b@example.com\nSubject: benchmark\n\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1) + "\n"
	for raw.Len() < 50<<10 {
		raw.WriteString(line)
	}
	b.SetBytes(int64(raw.Len()))
	b.ReportAllocs()
	for b.Loop() {
		Split(raw.Bytes())
	}
}

func TestParentOf(t *testing.T) {
	mail, mb := KeyOf(Mail, []byte("m")), KeyOf(Mailbox, MailboxContent("a@b.example"))
	if p, ok := ParentOf(Receive, ReceiveContent(mail, mb)); !ok || p != mb {
		t.Fatalf("ParentOf(receive) = %s, %v; want the mailbox %s", p, ok, mb)
	}
	for _, tc := range []struct {
		t       Table
		content []byte
	}{
		{Mail, MailContent(mail, mb)}, // a pair, but mail rows are not indexed
		{Receive, ReceiveContent(mail, mb)[:63]},
		{Receive, nil},
	} {
		if _, ok := ParentOf(tc.t, tc.content); ok {
			t.Errorf("ParentOf(%s, %d bytes) ok, want not indexed", tc.t, len(tc.content))
		}
	}
}

func TestReceivedCount(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"", 0},
		{"Subject: a\n\nReceived: in the body\n", 0},
		{"Received: a\n\tfolded\nX: b\nreceived \t: c\r\nRECEIVED:d\r\n\r\nReceived: body", 3},
		{"Received-SPF: pass\nReceivedX: no\n\n", 0},
		{"Received: open", 1},
	} {
		if got := ReceivedCount([]byte(tc.raw)); got != tc.want {
			t.Errorf("ReceivedCount(%q) = %d, want %d", tc.raw, got, tc.want)
		}
	}
}

func TestCRLF(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"\n", "\r\n"},
		{"a\r\n\nb", "a\r\n\r\nb"},
		{"a\rb\r", "a\rb\r"},     // a CR alone is content
		{"a\r\r\nb", "a\r\r\nb"}, // LF after CR stays one line end
		{"x\n\r\n\n", "x\r\n\r\n\r\n"},
	} {
		if got := string(CRLF([]byte(c.in))); got != c.want {
			t.Errorf("CRLF(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	in := []byte("no bare line ends\r\n")
	if out := CRLF(in); &out[0] != &in[0] {
		t.Error("CRLF copied a mail that needed no change")
	}
}
