package classify

import (
	"bytes"
	"strconv"
)

// maxTags bounds the tags read per HTML part.
const maxTags = 4096

// html tokenizes an HTML body: the visible text as words, and the markup as
// features (tag names, tag:attribute pairs, link hosts), because spam and
// ham differ as much in how they are built as in what they say. It is a
// small scanner, not a parser: it must cope with any garbage in linear time.
func (t *tokenizer) html(b []byte) {
	b = t.budget(b)
	text := t.htmlText[:0]
	tags, imgs := 0, 0
	anchor := -1
	var anchorOrg []byte
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '<' && bytes.HasPrefix(b[i:], []byte("<!--")):
			t.addString(pMeta, "html:comment")
			end := bytes.Index(b[i+4:], []byte("-->"))
			if end < 0 {
				i = len(b)
			} else {
				// A comment between letters hides a word from filters
				// ("vi<!-- x -->agra"); joining the text around it undoes that.
				i += 4 + end + 3
			}
		case c == '<' && i+1 < len(b) && (isAlpha(b[i+1]) || b[i+1] == '/' || b[i+1] == '!'):
			var tag []byte
			if end := bytes.IndexByte(b[i:], '>'); end < 0 {
				tag, i = b[i+1:], len(b)
			} else {
				tag, i = b[i+1:i+end], i+end+1
			}
			tags++
			if tags > maxTags {
				continue
			}
			t.href = nil
			closing := len(tag) > 0 && tag[0] == '/'
			name := t.tag(tag)
			switch {
			case name == "img":
				imgs++
			case name == "a" && closing:
				if anchor >= 0 && anchor <= len(text) && anchorOrg != nil {
					t.anchorText(text[anchor:], anchorOrg)
				}
				anchor, anchorOrg = -1, nil
			case name == "a":
				anchor, anchorOrg = len(text), t.href
			}
			// Block-level tags separate words; inline ones (font, b, span)
			// do not, since spam splits words with them.
			if !inlineTag(name) {
				text = append(text, ' ')
			}
			if name == "script" || name == "style" {
				closing := []byte("</" + name)
				if j := indexFold(b[i:], closing); j >= 0 {
					i += j
				} else {
					i = len(b)
				}
			}
		case c == '&':
			r, n := entity(b[i:])
			if n == 0 {
				text = append(text, c)
				i++
				continue
			}
			if r < 0x80 {
				text = append(text, byte(r))
			} else {
				text = append(text, ' ')
				t.addString(pMeta, "html:entity8")
			}
			i += n
		default:
			text = append(text, c)
			i++
		}
	}
	t.htmlText = text
	t.urls(text)
	t.words("", text)
	t.bodyShape(text)
	// How much of the part is text: image-and-layout mail with little to
	// read is a spam habit, newsletters carry articles.
	if len(b) > 0 {
		t.addString(pMeta+"htmltext:", strconv.Itoa(min(len(bytes.TrimSpace(text))*10/len(b), 9)))
	}
	if imgs > 0 && len(bytes.TrimSpace(text)) < 200 {
		t.addString(pMeta, "html:imgonly")
	}
}

// tag records one tag's name and attributes and returns its lower-case name.
func (t *tokenizer) tag(tag []byte) string {
	if len(tag) > 0 && (tag[0] == '/' || tag[0] == '!') {
		tag = tag[1:]
	}
	n := 0
	for n < len(tag) && n < 12 && isAlnum(tag[n]) {
		n++
	}
	if n == 0 {
		return ""
	}
	name := string(bytes.ToLower(tag[:n]))
	t.addString(pTag, name)
	rest := tag[n:]
	for len(rest) > 0 {
		// attribute name
		i := 0
		for i < len(rest) && !isAlpha(rest[i]) {
			i++
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && (isAlnum(rest[j]) || rest[j] == '-') {
			j++
		}
		if j == 0 {
			break
		}
		attr := bytes.ToLower(rest[:j])
		rest = rest[j:]
		if j <= 16 {
			t.buf = append(append(append(append(t.buf[:0], pAttr...), name...), ':'), attr...)
			if _, ok := t.set[string(t.buf)]; !ok {
				t.set[string(t.buf)] = struct{}{}
			}
		}
		// value
		k := 0
		for k < len(rest) && (rest[k] == ' ' || rest[k] == '\t' || rest[k] == '\n' || rest[k] == '\r') {
			k++
		}
		if k >= len(rest) || rest[k] != '=' {
			rest = rest[k:]
			continue
		}
		rest = rest[k+1:]
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r') {
			rest = rest[1:]
		}
		var val []byte
		if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
			q := rest[0]
			e := bytes.IndexByte(rest[1:], q)
			if e < 0 {
				val, rest = rest[1:], nil
			} else {
				val, rest = rest[1:1+e], rest[2+e:]
			}
		} else {
			e := bytes.IndexAny(rest, " \t\r\n")
			if e < 0 {
				e = len(rest)
			}
			val, rest = rest[:e], rest[e:]
		}
		switch string(attr) {
		case "href", "src", "action", "background":
			v := bytes.TrimSpace(val)
			if string(attr) == "href" {
				t.href = hrefOrg(v)
			}
			switch {
			case hasPrefixFold(v, "http://"):
				t.url(v[7:])
			case hasPrefixFold(v, "https://"):
				t.url(v[8:])
			case hasPrefixFold(v, "mailto:"):
				t.addString(pURL, "#mailto")
				if isUnsub(v) {
					t.addString(pURL, "#unsub:mailto")
				}
			}
		}
	}
	return name
}

func inlineTag(name string) bool {
	switch name {
	case "a", "b", "i", "u", "font", "span", "em", "strong", "small", "big", "sup", "sub", "":
		return true
	}
	return false
}

// entity decodes one HTML character reference at the start of b and
// returns its rune and length, or length 0 when b does not start one.
func entity(b []byte) (rune, int) {
	end := bytes.IndexByte(b[:min(len(b), 12)], ';')
	if end < 2 {
		return 0, 0
	}
	name := b[1:end]
	if name[0] == '#' {
		var r rune
		digits := name[1:]
		base := rune(10)
		if len(digits) > 0 && (digits[0] == 'x' || digits[0] == 'X') {
			base, digits = 16, digits[1:]
		}
		if len(digits) == 0 {
			return 0, 0
		}
		for _, c := range digits {
			var d rune
			switch {
			case c >= '0' && c <= '9':
				d = rune(c - '0')
			case base == 16 && c >= 'a' && c <= 'f':
				d = rune(c-'a') + 10
			case base == 16 && c >= 'A' && c <= 'F':
				d = rune(c-'A') + 10
			default:
				return 0, 0
			}
			r = r*base + d
			if r > 0x10FFFF {
				return 0, 0
			}
		}
		return r, end + 1
	}
	switch string(name) {
	case "nbsp":
		return ' ', end + 1
	case "amp":
		return '&', end + 1
	case "lt":
		return '<', end + 1
	case "gt":
		return '>', end + 1
	case "quot":
		return '"', end + 1
	case "apos":
		return '\'', end + 1
	}
	for _, c := range name {
		if !isAlnum(c) {
			return 0, 0
		}
	}
	return 0x80, end + 1 // some other named entity: a non-ASCII character
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// indexFold is bytes.Index ignoring ASCII case, for short needles.
func indexFold(b, needle []byte) int {
	for i := 0; i+len(needle) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(needle)], needle) {
			return i
		}
	}
	return -1
}
