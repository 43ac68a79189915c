package notify

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxBodyScan bounds the body bytes read to find the first line.
const maxBodyScan = 256 << 10

var words = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	return r, nil // unknown charsets pass as bytes; the text is only shown
}}

// headerInfo returns the From address (lower case) and decoded subject of
// a header section.
func headerInfo(header []byte) (from, subject string) {
	m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n")))
	if err != nil {
		return "", ""
	}
	if a, err := (&mail.AddressParser{WordDecoder: words}).Parse(m.Header.Get("From")); err == nil {
		from = strings.ToLower(a.Address)
	} else if l, err := (&mail.AddressParser{WordDecoder: words}).ParseList(m.Header.Get("From")); err == nil && len(l) > 0 {
		from = strings.ToLower(l[0].Address)
	}
	subject = m.Header.Get("Subject")
	if d, err := words.DecodeHeader(subject); err == nil {
		subject = d
	}
	return from, valid(subject)
}

// firstLine returns the first non-empty line of the mail's text: the body
// itself, or the first text/plain part of a multipart body, decoded.
func firstLine(header, body []byte) string {
	m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n")))
	if err != nil {
		return ""
	}
	return partLine(textproto.MIMEHeader(m.Header), bytes.NewReader(body), 0)
}

func partLine(h textproto.MIMEHeader, body io.Reader, depth int) string {
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ct = "text/plain"
	}
	switch {
	case strings.HasPrefix(ct, "multipart/") && depth < 4:
		mr := multipart.NewReader(body, params["boundary"])
		for range 20 {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if l := partLine(p.Header, p, depth+1); l != "" {
				return l
			}
		}
		return ""
	case ct != "text/plain":
		return ""
	}
	r := io.LimitReader(body, maxBodyScan)
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		// Cleaned before the test for empty: a line of only
		// control characters is empty.
		if l := strings.TrimSpace(valid(sc.Text())); l != "" {
			return l
		}
	}
	return ""
}

// newlineStripper drops CR and LF so base64 decodes across lines.
type newlineStripper struct{ r io.Reader }

func (s newlineStripper) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	if j == 0 && err == nil && n > 0 {
		return s.Read(p)
	}
	return j, err
}

// valid returns s as valid UTF-8 without control characters (each
// becomes a space, which the SMS template folds). A decoded subject or
// body line may hold any byte: a NUL makes every exec of a command
// gateway that has the text in an argument fail (and a header template
// with it is refused), so the SMS would be retried until given up; other
// controls (ESC sequences) have no business in an SMS either.
func valid(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
