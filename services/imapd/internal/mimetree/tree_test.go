package mimetree

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// shape renders a tree: type/subtype, then [parts] of a multipart,
// {mail} of a message, (body) of a leaf, ! for overflow.
func shape(t *Tree, p *Part) string {
	s := p.Type + "/" + p.Subtype
	if p.Overflow {
		s += "!"
	}
	switch p.Kind {
	case Multipart:
		var l []string
		for _, c := range p.Parts {
			l = append(l, shape(t, c))
		}
		return s + "[" + strings.Join(l, " ") + "]"
	case Message:
		return s + "{" + shape(t, p.Parts[0]) + "}"
	}
	return s + fmt.Sprintf("(%q)", t.Raw[p.BodyStart:p.End])
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want string
	}{
		{"plain", "Subject: x\r\n\r\nhi\r\n", Limits{}, `text/plain("hi\r\n")`},
		{"no header", "\r\nhi", Limits{}, `text/plain("hi")`},
		{"no blank line", "Subject: x\r\n", Limits{}, `text/plain("")`},
		{"empty", "", Limits{}, `text/plain("")`},
		{"multipart", "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\ntwo\r\n--b--\r\nepi\r\n", Limits{},
			`multipart/mixed[text/plain("one") text/html("two")]`},
		{"LF only", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n", Limits{},
			`multipart/mixed[text/plain("one") text/plain("two")]`},
		{"delimiter opens body, LWSP after it", "Content-Type: multipart/alternative; boundary=\"a b\"\r\n\r\n--a b \t\r\n\r\nx\r\n--a b--", Limits{},
			`multipart/alternative[text/plain("x")]`},
		{"longer boundary is not ours", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--bc\r\ny\r\n--b--\r\n", Limits{},
			`multipart/mixed[text/plain("x\r\n--bc\r\ny")]`},
		{"no close delimiter", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\n\r\nrest\r\n", Limits{},
			`multipart/mixed[text/plain("x") text/plain("rest\r\n")]`},
		{"empty multipart", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n", Limits{}, `multipart/mixed[]`},
		{"no delimiter at all", "Content-Type: multipart/mixed; boundary=b\r\n\r\nnothing\r\n", Limits{}, `multipart/mixed[]`},
		{"missing boundary", "Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nx\r\n", Limits{}, `text/plain("--b\r\n\r\nx\r\n")`},
		{"bad content type", "Content-Type: /\r\n\r\nx", Limits{}, `text/plain("x")`},
		{"bad parameter keeps the type", "Content-Type: image/png; =x\r\n\r\nx", Limits{}, `image/png("x")`},
		{"empty parts", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n--b--", Limits{},
			`multipart/mixed[text/plain("") text/plain("")]`},
		{"header without blank line in a part", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n--b--\r\n", Limits{},
			`multipart/mixed[text/html("")]`},
		{"delimiter on the last line", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b", Limits{}, `multipart/mixed[]`},
		{"message/rfc822", "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody", Limits{},
			`message/rfc822{text/plain("body")}`},
		{"digest default", "Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nSubject: in\r\n\r\nbody\r\n--b--", Limits{},
			`multipart/digest[message/rfc822{text/plain("body")}]`},
		{"nested close ends inner parts", "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\na\r\n--o\r\n\r\nb\r\n--o--", Limits{},
			`multipart/mixed[multipart/mixed[text/plain("a")] text/plain("b")]`},
		// Dovecot test-message-parser.c, nested limit 2: the inner
		// multipart is a leaf that runs to the outer delimiter.
		{"depth bound", "Content-Type: multipart/mixed; boundary=1\n\n--1\nContent-Type: multipart/mixed; boundary=2\n\n--2\n\n1\n--2--\n--1\n\n333\n", Limits{MaxDepth: 1},
			`multipart/mixed[multipart/mixed!("--2\n\n1\n--2--") text/plain("333\n")]`},
		{"message depth bound", "Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nx", Limits{MaxDepth: 1},
			`message/rfc822{message/rfc822!("x")}`},
		{"part bound: the last part takes the rest", "Content-Type: multipart/mixed; boundary=1\n\n--1\n\na\n--1\n\nb\n--1\n\nc\n--1--\n", Limits{MaxParts: 3},
			`multipart/mixed[text/plain("a") text/plain("b\n--1\n\nc\n--1--\n")]`},
		{"part bound on a container", "Content-Type: multipart/mixed; boundary=1\n\n--1\nContent-Type: message/rfc822\n\nx\n--1--", Limits{MaxParts: 2},
			`multipart/mixed[message/rfc822!("x\n--1--")]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := Parse([]byte(tt.in), tt.lim)
			if got := shape(tr, tr.Root); got != tt.want {
				t.Fatalf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
			}
			checkTree(t, tr, tt.lim.withDefaults())
		})
	}
}

func TestParseHeader(t *testing.T) {
	raw := "Subject: 1\r\nno colon\r\n: empty key\r\nTo\x00: x\r\nCONTENT-TYPE:  two\r\n folded\r\nFrom: \"q\\\"\" \xff\r\r\n\r\nCc: after\r\n"
	h := ParseHeader([]byte(raw))
	var keys []string
	for f := h.Fields(); f.Next(); {
		keys = append(keys, f.Key())
	}
	slices.Sort(keys)
	if want := []string{"Content-Type", "From", "Subject"}; !slices.Equal(keys, want) {
		t.Fatalf("ParseHeader(%q) keys = %q, want %q", raw, keys, want)
	}
	if got := h.Get("Content-Type"); got != "two folded" {
		t.Errorf("folded value = %q, want %q", got, "two folded")
	}
	if got := h.Get("From"); got != "\"q\\\"\" \xff\r" { // the bare CR stays
		t.Errorf("8-bit value = %q", got)
	}
	h = ParseHeader([]byte(" leading continuation\r\nSubject: 1"))
	if h.Get("Subject") != "1" || h.Len() != 1 {
		t.Errorf("leading continuation: %d fields, Subject=%q", h.Len(), h.Get("Subject"))
	}
}

// TestParseHeaderKeeps: the envelope's fields and the MIME fields are
// kept in any case; the others are left out, including names that only
// begin like a kept one.
func TestParseHeaderKeeps(t *testing.T) {
	kept := []string{"Date", "subject", "FROM", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID",
		"Content-Type", "content-transfer-encoding", "Content-Disposition", "Content-ID", "Content-Description",
		"Content-Language", "Content-Location", "Content-MD5", "Content-X"}
	dropped := []string{"Received", "DKIM-Signature", "X-Mailer", "MIME-Version", "Content-", "Content", "Tos", "Dates", "Reply", "Message-Id2", "Resent-From"}
	var raw strings.Builder
	for i, name := range append(slices.Clone(kept), dropped...) {
		fmt.Fprintf(&raw, "%s: v%d\r\n", name, i)
	}
	raw.WriteString("\r\n")
	h := ParseHeader([]byte(raw.String()))
	var got []string
	for f := h.Fields(); f.Next(); {
		got = append(got, f.Value())
	}
	slices.Reverse(got) // textproto lists the last field added first
	var want []string
	for i := range kept {
		want = append(want, fmt.Sprintf("v%d", i))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("kept values %q, want %q", got, want)
	}
}

func TestFind(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
		"Content-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\ninner\r\n--c--\r\n--b--\r\n")
	tr := Parse(raw, Limits{})
	tests := []struct {
		path []int
		want string // the part's body; "-" for none
	}{
		{nil, string(raw[HeaderLen(raw):])},
		{[]int{1}, "one"},
		{[]int{2}, "Content-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\ninner\r\n--c--"},
		{[]int{2, 1}, "inner"},
		{[]int{2, 1, 1}, "inner"},
		{[]int{2, 2}, "-"},
		{[]int{1, 1}, "one"},
		{[]int{1, 2}, "-"},
		{[]int{3}, "-"},
		{[]int{0}, "-"},
	}
	for _, tt := range tests {
		p := tr.Find(tt.path)
		got := "-"
		if p != nil {
			got = string(raw[p.BodyStart:p.End])
		}
		if got != tt.want {
			t.Errorf("Find(%v) = %q, want %q", tt.path, got, tt.want)
		}
	}
	// A mail that is not multipart: part 1 is its body.
	plain := Parse([]byte("A: 1\r\n\r\nbody"), Limits{})
	if p := plain.Find([]int{1}); p == nil || string(plain.Raw[p.BodyStart:p.End]) != "body" {
		t.Errorf("Find([1]) of a plain mail = %+v", p)
	}
}

func TestBodyStructure(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-ID: <i\x00d>\r\nContent-Disposition: attachment; filename=\"a\\\"b\"\r\nContent-Language: en, de\r\n\r\none\r\ntwo\r\n" +
		"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?utf-8?q?broken\r\nFrom: \"A \\\" B\" <a@b.example>\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: multipart/mixed; boundary=e\r\n\r\n--e--\r\n--b--\r\n")
	bs := Parse(raw, Limits{}).BodyStructure()
	mp, ok := bs.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 3 || mp.Subtype != "mixed" {
		t.Fatalf("BodyStructure = %#v, want multipart/mixed with 3 parts", bs)
	}
	text := mp.Children[0].(*imap.BodyStructureSinglePart)
	if text.Type != "text" || text.Size != 8 || text.Text == nil || text.Text.NumLines != 1 || text.ID != "<id>" ||
		text.Params["charset"] != "utf-8" || !slices.Equal(text.Extended.Language, []string{"en", "de"}) ||
		text.Extended.Disposition == nil || text.Extended.Disposition.Params["filename"] != "a\"b" {
		t.Errorf("text part = %+v %+v", text, text.Extended)
	}
	msg := mp.Children[1].(*imap.BodyStructureSinglePart)
	if msg.MessageRFC822 == nil || msg.MessageRFC822.Envelope == nil || msg.MessageRFC822.BodyStructure == nil ||
		len(msg.MessageRFC822.Envelope.From) != 1 || msg.MessageRFC822.Envelope.From[0].Name != "A \" B" {
		t.Errorf("message part = %+v", msg.MessageRFC822)
	}
	empty := mp.Children[2].(*imap.BodyStructureMultiPart)
	if len(empty.Children) != 1 || empty.Children[0].(*imap.BodyStructureSinglePart).Size != 0 {
		t.Errorf("empty multipart = %+v, want one 0-byte part", empty)
	}
}

// deep is a mail of n levels of multipart/mixed around one text part.
func deep(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: deep\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%x\"\r\n\r\n--%x\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nleaf\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--%x--\r\n", i)
	}
	return b.Bytes()
}

// TestBounds: 100,000 levels and 100,000 parts give trees within the
// bounds (TEST-CATALOG 34); go-imap's extractor took 22 s for 10,000
// levels.
func TestBounds(t *testing.T) {
	d := Parse(deep(100_000), Limits{})
	depth := 0
	for p := d.Root; p.Kind == Multipart; p = p.Parts[0] {
		depth++
	}
	if depth != DefaultMaxDepth {
		t.Errorf("deep mail: %d levels opened, want %d", depth, DefaultMaxDepth)
	}
	checkTree(t, d, Limits{}.withDefaults())
	var w bytes.Buffer
	w.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range 100_000 {
		fmt.Fprintf(&w, "--b\r\n\r\n%d\r\n", i)
	}
	w.WriteString("--b--\r\n")
	wide := Parse(w.Bytes(), Limits{})
	if wide.Count != DefaultMaxParts || len(wide.Root.Parts) != DefaultMaxParts-1 {
		t.Errorf("wide mail: %d parts, %d children; want %d in all", wide.Count, len(wide.Root.Parts), DefaultMaxParts)
	}
	last := wide.Root.Parts[len(wide.Root.Parts)-1]
	if last.End != w.Len() {
		t.Errorf("the last part allowed ends at %d, want the end of the mail %d", last.End, w.Len())
	}
	checkTree(t, wide, Limits{}.withDefaults())
}

// checkTree checks the invariants of the package doc and of BodyStructure.
func checkTree(t *testing.T, tr *Tree, lim Limits) {
	t.Helper()
	n := 0
	var walk func(p *Part, lo, hi, depth int)
	walk = func(p *Part, lo, hi, depth int) {
		n++
		if !(lo <= p.Start && p.Start <= p.BodyStart && p.BodyStart <= p.End && p.End <= hi) {
			t.Fatalf("part [%d %d %d] outside its parent's body [%d %d]", p.Start, p.BodyStart, p.End, lo, hi)
		}
		if depth > lim.MaxDepth {
			t.Fatalf("part at depth %d > %d", depth, lim.MaxDepth)
		}
		if p.Type == "" || p.Subtype == "" {
			t.Fatalf("empty media type %q/%q", p.Type, p.Subtype)
		}
		if p.Kind == Message && len(p.Parts) != 1 {
			t.Fatalf("message part with %d mails", len(p.Parts))
		}
		for _, c := range p.Parts {
			walk(c, p.BodyStart, p.End, depth+1)
		}
	}
	walk(tr.Root, 0, len(tr.Raw), 0)
	if n != tr.Count || n > lim.MaxParts {
		t.Fatalf("%d parts, Count %d, bound %d", n, tr.Count, lim.MaxParts)
	}
	var check func(bs imap.BodyStructure)
	check = func(bs imap.BodyStructure) {
		switch bs := bs.(type) {
		case *imap.BodyStructureMultiPart:
			if len(bs.Children) == 0 {
				t.Fatal("multipart without parts in BODYSTRUCTURE")
			}
			for _, c := range bs.Children {
				check(c)
			}
		case *imap.BodyStructureSinglePart:
			if strings.EqualFold(bs.Type, "message") && (strings.EqualFold(bs.Subtype, "rfc822") || strings.EqualFold(bs.Subtype, "global")) {
				if bs.MessageRFC822 == nil {
					t.Fatal("message/rfc822 without envelope and body")
				}
				check(bs.MessageRFC822.BodyStructure)
			}
			if strings.EqualFold(bs.Type, "text") != (bs.Text != nil) {
				t.Fatalf("text part %s/%s with lines %v", bs.Type, bs.Subtype, bs.Text)
			}
			if strings.Contains(bs.ID+bs.Description+bs.Encoding, "\x00") {
				t.Fatal("NUL in BODYSTRUCTURE")
			}
		}
	}
	check(tr.BodyStructure())
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nhi\r\n"), 0, 0)
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nA: 1\r\n\r\nx\r\n--b--\r\n"), 2, 3)
	f.Add([]byte("Content-Type: multipart/digest; boundary=b\n\n--b\n--b\n\n--b--"), 0, 2)
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n----\r\n"), 1, 1)
	f.Add(deep(30), 5, 0)
	f.Fuzz(func(t *testing.T, raw []byte, depth, parts int) {
		lim := Limits{MaxDepth: depth % 8, MaxParts: parts % 64}
		tr := Parse(raw, lim)
		checkTree(t, tr, lim.withDefaults())
		for _, path := range [][]int{{1}, {1, 1}, {2}, {2, 1}, {1, 2, 1}} {
			if p := tr.Find(path); p != nil && p.End > len(raw) {
				t.Fatalf("Find(%v) past the end", path)
			}
		}
	})
}

// TestNameIs: field names compare in any ASCII case, and only in ASCII
// (strings.EqualFold, used before, also took "Subjeſt" for Subject).
func TestNameIs(t *testing.T) {
	for _, c := range []struct {
		field, name string
		want        bool
	}{
		{"Subject", "subject", true}, {"SUBJECT", "Subject", true}, {"x-Mailer", "X-MAILER", true},
		{"Subject", "Subjec", false}, {"Subject", "Subjeſt", false}, {"Subject", "Subjext", false},
		{"", "", true}, {"A[", "a{", false}, {"@", "`", false},
	} {
		if got := NameIs([]byte(c.field), c.name); got != c.want {
			t.Errorf("NameIs(%q, %q) = %v, want %v", c.field, c.name, got, c.want)
		}
	}
}
