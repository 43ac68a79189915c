package smsrules

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Template is an SMS text with placeholders: {from}, {subject}, {line} (the
// first non-empty line of the body), {mailbox}, {rule} and {time} (local
// HH:MM). "{{" is a literal "{". The zero Template is the default text.
type Template struct{ src string }

// MaxText is the longest SMS text smsd sends, in characters: three
// concatenated GSM segments. Longer texts are cut with "...".
const MaxText = 459

// ParseTemplate checks s and returns it as a Template.
func ParseTemplate(s string) (Template, error) {
	if len(s) > MaxLine {
		return Template{}, fmt.Errorf("%w: template longer than %d bytes", ErrSyntax, MaxLine)
	}
	if strings.ContainsAny(s, "\r\n") {
		return Template{}, fmt.Errorf("%w: template spans lines", ErrSyntax)
	}
	if _, err := expand(s, func(string) string { return "" }); err != nil {
		return Template{}, err
	}
	return Template{src: s}, nil
}

// MustTemplate is ParseTemplate for constants; it panics on a bad s.
func MustTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's source.
func (t Template) String() string {
	if t.src == "" {
		return defaultText
	}
	return t.src
}

// UsesLine reports whether the text needs the body's first line (smsd then
// reads the body).
func (t Template) UsesLine() bool { return strings.Contains(t.String(), "{line}") }

var placeholders = map[string]bool{"from": true, "subject": true, "line": true, "mailbox": true, "rule": true, "time": true}

// Text returns the SMS text for m, one line of at most MaxText characters,
// valid UTF-8 without control characters or bidirectional formatting
// characters: every value comes from a mail or a row, and a NUL, an ESC
// sequence or a line break must not reach a gateway (a command gateway
// gets the text as an argument) or a phone.
func (t Template) Text(m Mail, rule string, loc *time.Location) string {
	vals := map[string]string{
		"from": m.From, "subject": m.Subject, "line": m.Line, "mailbox": m.Mailbox, "rule": rule,
		"time": m.Time.In(loc).Format("15:04"),
	}
	s, _ := expand(t.String(), func(name string) string { return oneLine(clean(vals[name])) })
	// The template's own text too: a rule row made outside the config
	// language may hold a tab or an ESC.
	return limit(clean(s), MaxText)
}

// clean returns s as valid UTF-8 ("?" for a bad byte) with each control
// character (C0, DEL, C1: NUL, ESC, CR, LF, NEL...) a space and the
// bidirectional formatting characters dropped, so a sender cannot make
// the text read backwards on the phone ("Unicode tricks").
func clean(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r):
			return ' '
		case unicode.Is(unicode.Bidi_Control, r):
			return -1
		}
		return r
	}, s)
}

func expand(src string, val func(string) string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '{' && i+1 < len(src) && src[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '{':
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%w: template: unclosed {", ErrSyntax)
			}
			name := src[i+1 : i+end]
			if !placeholders[name] {
				return "", fmt.Errorf("%w: template: unknown placeholder {%s} (want from, subject, line, mailbox, rule or time)", ErrSyntax, cut(name))
			}
			b.WriteString(val(name))
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// oneLine folds white space runs (line breaks included) into one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// limit cuts s to at most n runes, ending in "..." when cut.
func limit(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}
