package mimetree

import (
	"bytes"
	"errors"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Default bounds (Dovecot's message parser defaults).
const (
	DefaultMaxDepth = 100    // max_nested_mime_parts
	DefaultMaxParts = 10_000 // max_total_mime_parts
)

// Limits bound Parse. Zero fields mean the defaults.
type Limits struct {
	MaxDepth int // levels of multipart and message/rfc822 opened
	MaxParts int // parts in all, the mail itself counted
}

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	return l
}

// Kind is what a part holds.
type Kind int

const (
	Leaf      Kind = iota // a body of its own type
	Multipart             // Parts are its body parts
	Message               // message/rfc822 or message/global: Parts[0] is the enclosed mail
)

func (k Kind) String() string {
	switch k {
	case Leaf:
		return "leaf"
	case Multipart:
		return "multipart"
	case Message:
		return "message"
	}
	return "kind?"
}

// Part is one MIME entity of a mail. Its header is Raw[Start:BodyStart]
// (the blank line included) and its body Raw[BodyStart:End].
type Part struct {
	Start, BodyStart, End int
	Header                textproto.Header // the envelope and MIME fields, parsed leniently (ParseHeader)
	// Type and Subtype are lower case and never empty; Params may be nil.
	Type, Subtype string
	Params        map[string]string
	Kind          Kind
	Parts         []*Part
	// Overflow: a multipart or message part a bound kept closed
	// (reported as application/octet-stream).
	Overflow bool
}

// Tree is a parsed mail. It is immutable and safe for concurrent reads.
type Tree struct {
	Raw   []byte // the mail, not copied
	Root  *Part
	Count int // parts in the tree
}

// Parse splits raw into its MIME parts within lim. It never fails: any
// input gives a tree (see the package doc for what is accepted).
func Parse(raw []byte, lim Limits) *Tree {
	p := &parser{raw: raw, lim: lim.withDefaults()}
	root := p.entity(0, len(raw), 0, false)
	return &Tree{Raw: raw, Root: root, Count: p.count}
}

type parser struct {
	raw   []byte
	lim   Limits
	count int
}

// entity parses raw[start:end] as one entity whose children would be at
// depth+1. inDigest selects the default type of multipart/digest parts.
func (p *parser) entity(start, end, depth int, inDigest bool) *Part {
	p.count++
	body := start + HeaderLen(p.raw[start:end])
	pt := &Part{Start: start, BodyStart: body, End: end, Header: ParseHeader(p.raw[start:body])}
	pt.Type, pt.Subtype, pt.Params = contentType(pt.Header, inDigest)
	var kind Kind
	switch {
	case pt.Type == "multipart" && pt.Params["boundary"] != "":
		kind = Multipart
	case pt.Type == "multipart":
		// RFC 2045 §5.2: an unusable Content-Type means text/plain.
		pt.Type, pt.Subtype, pt.Params = "text", "plain", nil
		return pt
	case isMessage(pt.Type, pt.Subtype):
		kind = Message
	default:
		return pt
	}
	if depth >= p.lim.MaxDepth || p.count >= p.lim.MaxParts {
		pt.Overflow = true
		return pt
	}
	pt.Kind = kind
	if kind == Message {
		pt.Parts = []*Part{p.entity(body, end, depth+1, false)}
		return pt
	}
	pt.Parts = p.multipart(body, end, "--"+pt.Params["boundary"], depth+1, pt.Subtype == "digest")
	return pt
}

// multipart splits the multipart body raw[start:end] at its delimiters
// (dash = "--" boundary) into parts at depth.
func (p *parser) multipart(start, end int, dash string, depth int, digest bool) []*Part {
	raw := p.raw[:end]
	// The first delimiter may open the body; later ones follow a LF.
	line := -1
	if p.delimiterAt(raw, start, dash) {
		line = start
	} else if i := p.nextDelimiter(raw, start, dash); i >= 0 {
		line = i + 1
	}
	var parts []*Part
	for line >= 0 && p.count < p.lim.MaxParts {
		after := line + len(dash)
		if bytes.HasPrefix(raw[after:], []byte("--")) {
			break // the close delimiter
		}
		nl := bytes.IndexByte(raw[after:], '\n')
		if nl < 0 {
			break // a delimiter on the last line opens nothing
		}
		partStart := after + nl + 1
		if p.count+1 == p.lim.MaxParts {
			// The last part allowed takes the rest of its parent.
			parts = append(parts, p.entity(partStart, end, depth, digest))
			break
		}
		// Searching from the delimiter line's own LF finds a delimiter
		// that follows at once (an empty part).
		i := p.nextDelimiter(raw, partStart-1, dash)
		partEnd, next := end, -1
		if i >= 0 {
			partEnd, next = i, i+1
			if partEnd > partStart && raw[partEnd-1] == '\r' {
				partEnd--
			}
			partEnd = max(partEnd, partStart)
		}
		parts = append(parts, p.entity(partStart, partEnd, depth, digest))
		line = next
	}
	return parts
}

// delimiterAt reports whether a boundary delimiter starts at raw[i].
func (p *parser) delimiterAt(raw []byte, i int, dash string) bool {
	if !bytes.HasPrefix(raw[i:], []byte(dash)) {
		return false
	}
	j := i + len(dash)
	if j == len(raw) {
		return true
	}
	switch raw[j] {
	case ' ', '\t', '\r', '\n', '-':
		return true
	}
	return false
}

// nextDelimiter returns the index of the LF before the next delimiter at
// or after raw[from], or -1.
func (p *parser) nextDelimiter(raw []byte, from int, dash string) int {
	nlDash := "\n" + dash
	for from < len(raw) {
		i := bytes.Index(raw[from:], []byte(nlDash))
		if i < 0 {
			return -1
		}
		i += from
		if p.delimiterAt(raw, i+1, dash) {
			return i
		}
		from = i + 1
	}
	return -1
}

// HeaderLen returns the length of raw's header section, its blank line
// included (all of raw when there is no blank line).
func HeaderLen(raw []byte) int {
	pos := 0
	for pos < len(raw) {
		end := bytes.IndexByte(raw[pos:], '\n')
		if end < 0 {
			return len(raw)
		}
		line := raw[pos : pos+end]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return pos + end + 1
		}
		pos += end + 1
	}
	return len(raw)
}

// ParseHeader reads the fields of a header section leniently (EachField)
// that imapd reads from a parsed header: the envelope's (RFC 3501 §7.4.2)
// and the MIME fields (Content-*, which BODYSTRUCTURE, BINARY and the
// decoding of a part read). Every other field is left out: Received,
// DKIM-Signature and X- fields are most of a real header, and parsing
// each into the header (an allocation per field, its value trimmed and
// copied) was about half of imapd's CPU in a listing of ENVELOPE and
// BODYSTRUCTURE. Fields wanted by name (SEARCH HEADER, BODY[HEADER.FIELDS])
// are read from the raw header section, not from here.
func ParseHeader(raw []byte) textproto.Header {
	var h textproto.Header
	EachField(raw, func(name, field []byte) {
		if parsedField(name) {
			h.AddRaw(field)
		}
	})
	return h
}

// envelopeFields are the fields of an ENVELOPE, lower case.
var envelopeFields = []string{"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id"}

// parsedField reports whether ParseHeader keeps the field named name.
func parsedField(name []byte) bool {
	const mime = "content-"
	if len(name) > len(mime) && NameIs(name[:len(mime)], mime) {
		return true
	}
	for _, f := range envelopeFields {
		if NameIs(name, f) {
			return true
		}
	}
	return false
}

// NameIs reports whether the field name (as EachField gives it) is name,
// ASCII letters in any case. It is strings.EqualFold without Unicode
// folding or a conversion: a header listing compares every field of
// every mail with each name asked for.
func NameIs(field []byte, name string) bool {
	if len(field) != len(name) {
		return false
	}
	for i := range len(field) {
		if lower(field[i]) != lower(name[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// EachField calls fn with each field of a header section in order: its
// name and its bytes, continuation lines and line ends included. It reads
// leniently: lines without a colon, with an empty or bad field name (RFC
// 5322 §2.2: printable ASCII but colon), and continuation lines before any
// field are skipped; it stops at the first blank line.
func EachField(raw []byte, fn func(name, field []byte)) {
	fstart, fend := -1, -1 // the current field, continuation lines included
	flush := func() {
		if fstart < 0 {
			return
		}
		field := raw[fstart:fend]
		colon := bytes.IndexByte(field, ':')
		if colon > 0 {
			if key := bytes.TrimRight(field[:colon], " \t"); len(key) > 0 && validKey(key) {
				fn(key, field)
			}
		}
		fstart = -1
	}
	for pos := 0; pos < len(raw); {
		next := len(raw)
		end := bytes.IndexByte(raw[pos:], '\n')
		if end >= 0 {
			end += pos
			next = end + 1
		} else {
			end = len(raw)
		}
		line := raw[pos:end]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if fstart >= 0 {
				fend = next
			}
		} else {
			flush()
			fstart, fend = pos, next
		}
		pos = next
	}
	flush()
}

func validKey(k []byte) bool {
	for _, c := range k {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// contentType returns a part's media type, lower case, with defaults.
func contentType(h textproto.Header, inDigest bool) (typ, sub string, params map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		if inDigest {
			return "message", "rfc822", nil
		}
		return "text", "plain", nil
	}
	mt, params, err := parseMediaType(v)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return "text", "plain", nil
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || typ == "" || sub == "" {
		return "text", "plain", nil
	}
	return typ, sub, params
}

func isMessage(typ, sub string) bool {
	return typ == "message" && (sub == "rfc822" || sub == "global")
}

// Find returns the part a section number names (RFC 9051 §6.4.5), or nil.
// In a mail that is not multipart, part 1 is the mail's body; the parts of
// a message/rfc822 part are those of the mail it encloses.
func (t *Tree) Find(path []int) *Part {
	cur := t.Root
	for i, n := range path {
		if i > 0 && cur.Kind == Message {
			cur = cur.Parts[0]
		}
		switch {
		case cur.Kind == Multipart:
			if n < 1 || n > len(cur.Parts) {
				return nil
			}
			cur = cur.Parts[n-1]
		case n != 1:
			return nil
		}
	}
	return cur
}

// Enclosed returns the mail p encloses if it is a message/rfc822 part,
// else p itself (HEADER and TEXT of another part then read its own
// header and body, as go-imap does).
func (p *Part) Enclosed() *Part {
	if p.Kind == Message {
		return p.Parts[0]
	}
	return p
}
