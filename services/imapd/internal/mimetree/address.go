package mimetree

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// Placeholders for the parts of an address a header lacks or garbles, so
// that the address still shows: a NIL host would make it a group marker
// (RFC 9051 §7.5.2). These are Dovecot's, which clients already meet.
const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
	syntaxError    = "SYNTAX_ERROR"
)

// addressList parses the value of an address header (RFC 5322 §3.4, with
// the obsolete forms of §4.4) into ENVELOPE addresses, at most max of
// them (0: no bound). Groups come as RFC 9051 §7.5.2 markers: an address
// with only the group name as mailbox before the members, and an empty
// one after them.
//
// It is lenient, as a mail reader must be: 8-bit bytes, dots anywhere in
// a local part, quoted local parts and a missing mailbox or domain are
// taken as they come, and an address that cannot be read ends the list
// with what was read of it (host SYNTAX_ERROR) instead of losing the
// list. (go-message's parser, which go-imap uses, drops the whole list
// for one bad address: the From of some wanted mail showed as NIL.)
// Display names keep their RFC 2047 encoded words, which clients decode
// (RFC 9051 §7.5.2 sends them as in the header); raw 8-bit names that are
// not UTF-8 are read as Latin-1, the only guess without a charset.
func addressList(v string, max int) []imap.Address {
	p := addrParser{s: v, max: max}
	p.list()
	return p.out
}

type addrParser struct {
	s       string
	i       int
	max     int
	out     []imap.Address
	comment string // the last comment skipped, a display name for a bare addr-spec
	stop    bool   // a syntax error ended the list
}

func (p *addrParser) full() bool { return p.stop || p.max > 0 && len(p.out) >= p.max }

// emit adds an address, placeholders standing in for a missing mailbox
// or host.
func (p *addrParser) emit(name, mailbox, host string) {
	if mailbox == "" {
		mailbox = missingMailbox
	}
	if host == "" {
		host = missingDomain
	}
	if !p.full() {
		p.out = append(p.out, imap.Address{Name: utf8Name(name), Mailbox: mailbox, Host: host})
	}
}

func (p *addrParser) list() {
	for !p.full() {
		p.cfws()
		if p.i >= len(p.s) {
			return
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		p.address(false)
	}
}

// address reads a mailbox, or a group unless inGroup (groups do not
// nest).
func (p *addrParser) address(inGroup bool) {
	start := p.i
	p.comment = ""
	phrase, local, dotted := p.phrase()
	p.cfws()
	switch p.peek() {
	case ':':
		if inGroup {
			p.emit("", phrase, syntaxError)
			p.stop = true
			return
		}
		p.i++
		p.group(phrase)
	case '<':
		p.i++
		p.angle(phrase)
	case '@':
		if !dotted {
			// `"a"b@c`: words side by side are a display name, not a
			// local part; what follows cannot be read.
			p.emit(phrase, missingMailbox, missingDomain)
			p.stop = true
			return
		}
		p.i++
		p.addrSpecFrom(local)
	default:
		// A word alone (`To: foo`), or nothing readable at all (`[x]`):
		// what there is shows, and the list goes on after the next comma.
		p.emit("", local, missingDomain)
		p.skipToComma()
		if p.i == start {
			p.i++ // a ';' outside a group
		}
	}
}

// group reads the members of a group up to its ';'. The closing marker
// follows the opening one even when the list ends inside the group, so
// clients never see an open group.
func (p *addrParser) group(name string) {
	if p.full() {
		return
	}
	if name == "" {
		name = missingMailbox // an empty name would make it an end marker
	}
	p.out = append(p.out, imap.Address{Mailbox: name})
	for !p.full() {
		p.cfws()
		if p.i >= len(p.s) {
			break
		}
		c := p.s[p.i]
		if c == ';' {
			p.i++
			break
		}
		if c == ',' {
			p.i++
			continue
		}
		p.address(true)
	}
	p.out = append(p.out, imap.Address{})
}

// angle reads an angle-addr after its '<'; name is the display name.
func (p *addrParser) angle(name string) {
	p.route()
	n, local, dotted := p.phrase()
	p.cfws()
	if !dotted {
		// `<Undisclosed Recipients@x>`: no address can be read from it.
		first, _, _ := strings.Cut(strings.TrimSpace(n), " ")
		p.emit(name, first, syntaxError)
		p.stop = true
		return
	}
	switch p.peek() {
	case '>':
		p.i++
		p.emit(name, local, missingDomain)
		p.end()
		return
	case '@':
		p.i++
	default:
		p.emit(name, local, syntaxError)
		p.stop = true
		return
	}
	host := p.domain()
	p.cfws()
	if p.peek() != '>' {
		p.emit(name, local, syntaxError)
		p.stop = true
		return
	}
	p.i++
	p.emit(name, local, host)
	p.end()
}

// end stops the list unless the address just read is followed by the
// next one or the list's end: `<a@b>c.d, <e@f>` is not read on.
func (p *addrParser) end() {
	p.cfws()
	if c := p.peek(); c != 0 && c != ',' && c != ';' {
		p.stop = true
	}
}

// addrSpecFrom reads the domain of a bare addr-spec whose local part
// came before the '@'.
func (p *addrParser) addrSpecFrom(local string) {
	p.comment = ""
	host := p.domain()
	p.cfws() // a comment after the address is its display name
	p.emit(p.comment, local, host)
	p.end() // `a@b@c`, `a@b <c@d>`: the rest is unreadable
}

// route skips an obsolete source route (`<@a,@b:user@c>`).
func (p *addrParser) route() {
	save := p.i
	for {
		p.cfws()
		if p.peek() != '@' {
			break
		}
		p.i++
		p.domain()
		p.cfws()
		if p.peek() == ',' {
			p.i++
			continue
		}
		if p.peek() == ':' {
			p.i++
			return
		}
		break
	}
	p.i = save
}

// domain reads a domain: dot-separated atoms or a domain literal.
func (p *addrParser) domain() string {
	p.cfws()
	if p.peek() == '[' {
		j := strings.IndexByte(p.s[p.i:], ']')
		if j < 0 {
			lit := p.s[p.i:]
			p.i = len(p.s)
			return lit
		}
		lit := p.s[p.i : p.i+j+1]
		p.i += j + 1
		return lit
	}
	var b strings.Builder
	for {
		p.cfws()
		if a := p.atom(); a != "" {
			b.WriteString(a)
		} else if p.peek() == '.' {
			p.i++
			b.WriteByte('.')
		} else {
			break
		}
	}
	d := b.String()
	if d == "" || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return missingDomain // `a@b.`: no host to show
	}
	return d
}

// phrase reads words and dots up to the next special. It returns them
// as a display name (words joined by one space, quoted strings
// unquoted) and as a local part (joined as written, without the space),
// and whether they can be a local part at all: words only with a dot
// between (`a.b`, `"a".b`, `....`), never two words side by side
// (`Undisclosed Recipients`, `"a"b`).
func (p *addrParser) phrase() (name, local string, dotted bool) {
	var n, l strings.Builder
	dotted = true
	word := false // the last token was a word
	for {
		before := p.i
		p.cfws()
		space := p.i > before && n.Len() > 0
		c := p.peek()
		var w string
		switch {
		case c == '"':
			w = p.quoted()
		case c == '.':
			p.i++
			w = "."
		default:
			w = p.atom()
			if w == "" {
				return n.String(), l.String(), dotted
			}
		}
		isWord := w != "."
		if isWord && word {
			dotted = false
		}
		// Words are one space apart, even when written together
		// (`"a"b`); a dot keeps the spacing it was written with.
		if n.Len() > 0 && (space || isWord && word) {
			n.WriteByte(' ')
		}
		word = isWord
		n.WriteString(w)
		l.WriteString(w)
	}
}

// atom reads a run of atext, any byte of 0x80 and above included.
func (p *addrParser) atom() string {
	j := p.i
	for j < len(p.s) && isAtext(p.s[j]) {
		j++
	}
	a := p.s[p.i:j]
	p.i = j
	return a
}

func isAtext(c byte) bool {
	if c >= 0x80 {
		return true
	}
	if c <= ' ' || c == 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>[]:;@\,."`, rune(c))
}

// quoted reads a quoted string after its opening quote is seen; line
// folds are removed and quoted pairs undone.
func (p *addrParser) quoted() string {
	var b strings.Builder
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		case '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// cfws skips white space, line folds and comments, keeping the text of
// the last comment.
func (p *addrParser) cfws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		case '(':
			p.comment = p.readComment()
		default:
			return
		}
	}
}

func (p *addrParser) readComment() string {
	var b strings.Builder
	depth := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '(':
			if depth > 0 {
				b.WriteByte(c)
			}
			depth++
		case ')':
			depth--
			if depth == 0 {
				return strings.Join(strings.Fields(b.String()), " ")
			}
			b.WriteByte(c)
		case '\\':
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// skipToComma steps over what no rule reads (`[x]`, a stray '>') up to
// the next address of the list.
func (p *addrParser) skipToComma() {
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != ';' {
		if p.s[p.i] == '"' {
			p.quoted()
			continue
		}
		p.i++
	}
}

func (p *addrParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// utf8Name returns a display name as UTF-8: raw 8-bit bytes that are not
// UTF-8 are read as Latin-1. go-imap's writer sends a non-ASCII name as
// a UTF-8 encoded word.
func utf8Name(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}
