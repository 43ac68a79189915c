package classify

import (
	"bytes"
)

// Structure features beyond single tokens: how many sites a mail links
// to, links that hide where they go, words written to dodge filters, and
// whether the text and HTML versions of a multipart/alternative say the
// same thing (a mail program derives one from the other; spamware often
// sends unrelated or empty text).

// maxLinkDoms bounds the distinct link domains remembered per mail.
const maxLinkDoms = 16

// link records one link's host (lower case) and path for the per-mail
// link counts, and flags redirectors: a link whose path or query carries
// another URL.
func (t *tokenizer) link(host, path []byte) {
	t.links++
	if !isNumericHost(host) {
		org := orgDomain(host)
		if len(org) > 0 && len(t.linkDoms) < maxLinkDoms {
			found := false
			for _, d := range t.linkDoms {
				if d == string(org) {
					found = true
					break
				}
			}
			if !found {
				t.linkDoms = append(t.linkDoms, string(org))
			}
		}
	}
	if len(path) > 0 && isUnsub(path) {
		switch {
		case t.fromOrg == nil:
		case bytes.Equal(orgDomain(host), t.fromOrg):
			t.addString(pURL, "#unsub:fromdom")
		default:
			t.addString(pURL, "#unsub:otherdom")
		}
	}
	if len(path) > 0 {
		p := path[:min(len(path), 512)]
		if bytes.Contains(p, []byte("http")) || bytes.Contains(p, []byte("%3a%2f%2f")) || bytes.Contains(p, []byte("%3A%2F%2F")) {
			t.addString(pURL, "#redirect")
		}
	}
}

// finish adds the per-mail counts once the whole mail was read.
func (t *tokenizer) finish() {
	t.addString(pURL+"#ndom:", bucket(len(t.linkDoms)))
	t.addString(pURL+"#nlinks:", bucket(t.links))
}

// isLeet reports a word that mixes letters with a digit standing in for a
// letter ("v1agra", "m0rtgage"): at least three letters and one or two of
// the digits 0, 1, 3, 4, 5, 7, each next to a letter and not at either end.
func isLeet(w []byte) bool {
	if len(w) < 4 {
		return false
	}
	var letters, subs int
	for i, c := range w {
		switch {
		case isAlpha(c):
			letters++
		case c == '0' || c == '1' || c == '3' || c == '4' || c == '5' || c == '7':
			if i == 0 || i == len(w)-1 || !isAlpha(w[i-1]) && !isAlpha(w[i+1]) {
				return false
			}
			subs++
		default:
			return false
		}
	}
	return subs >= 1 && subs <= 2 && letters >= 3
}

// hasSpacedWord reports a word written letter by letter with separators
// ("F R E E", "V.I.A.G.R.A", "c-a-s-h"): at least four single letters in
// a row, each two apart, with the same separator between them.
func hasSpacedWord(b []byte) bool {
	run, last := 0, -2
	var sep byte
	for i, c := range b {
		if !isAlpha(c) || i > 0 && (isAlnum(b[i-1]) || b[i-1] >= 0x80) || i+1 < len(b) && (isAlnum(b[i+1]) || b[i+1] >= 0x80) {
			continue
		}
		// c is a single letter.
		if run > 0 && last == i-2 && b[i-1] == sep {
			run++
		} else {
			run, sep = 1, 0
			if i+1 < len(b) {
				sep = b[i+1]
			}
		}
		if sep != ' ' && sep != '.' && sep != '-' && sep != '*' && sep != '_' {
			run = 0
		}
		last = i
		if run >= 4 {
			return true
		}
	}
	return false
}

// wordSig is a 2048-bit signature of a word set, for comparing two parts.
type wordSig struct {
	bits [32]uint64
}

func (s *wordSig) add(w []byte) {
	h := fnv1a(string(w))
	s.bits[h>>6&31] |= 1 << (h & 63)
}

func (s *wordSig) count() int {
	n := 0
	for _, w := range s.bits {
		n += popcount(w)
	}
	return n
}

func popcount(x uint64) int {
	n := 0
	for x != 0 {
		x &= x - 1
		n++
	}
	return n
}

// alternative compares the text and HTML children of a
// multipart/alternative: the share of the smaller part's word signature
// found in the other, in fifths, or "plainstub" when the text part says
// almost nothing of a long HTML part.
func (t *tokenizer) alternative(plain, html *wordSig) {
	np, nh := plain.count(), html.count()
	if np == 0 && nh == 0 {
		return
	}
	if np == 0 || nh == 0 || np*8 < nh {
		t.addString(pMeta, "alt:plainstub")
		return
	}
	var both int
	for i := range plain.bits {
		both += popcount(plain.bits[i] & html.bits[i])
	}
	t.addString(pMeta+"alt:", string(rune('0'+min(both*5/min(np, nh), 4))))
}

// anchorText checks the visible text of one link against where it goes: a
// text that names another site than the href's ("www.paypal.com" linking
// elsewhere) is a classic deception.
func (t *tokenizer) anchorText(text, hrefOrg []byte) {
	for n := 0; n < 4; n++ {
		i := bytes.Index(text, []byte("www."))
		j := bytes.Index(text, []byte("://"))
		switch {
		case j >= 0 && (i < 0 || j < i):
			i = j + 3
		case i < 0:
			return
		}
		text = text[i:]
		e := 0
		for e < len(text) && (isAlnum(text[e]) || text[e] == '.' || text[e] == '-') {
			e++
		}
		host := bytes.ToLower(bytes.TrimRight(text[:e], "."))
		text = text[e:]
		if org := orgDomain(host); len(org) > 0 {
			if !bytes.Equal(org, hrefOrg) {
				t.addString(pURL, "#textmismatch")
			}
			return
		}
	}
}

// hrefOrg returns the organisational domain of an http(s) href value, or
// nil.
func hrefOrg(v []byte) []byte {
	switch {
	case hasPrefixFold(v, "http://"):
		v = v[7:]
	case hasPrefixFold(v, "https://"):
		v = v[8:]
	default:
		return nil
	}
	if i := bytes.IndexAny(v, "/?#: \t\r\n"); i >= 0 {
		v = v[:i]
	}
	if i := bytes.LastIndexByte(v, '@'); i >= 0 {
		v = v[i+1:]
	}
	return orgDomain(bytes.ToLower(v))
}

// isUnsub reports a link that looks like an unsubscribe or removal link.
func isUnsub(v []byte) bool {
	var buf [256]byte
	n := copy(buf[:], v)
	for i, c := range buf[:n] {
		if c >= 'A' && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	l := buf[:n]
	return bytes.Contains(l, []byte("unsub")) || bytes.Contains(l, []byte("remove")) || bytes.Contains(l, []byte("opt"))
}

// maxAddrLen bounds the To address toInBody looks for: RFC 5321
// §4.5.3.1.3's longest path. The search compares it at every '@' of the
// body, so an unbounded one (a header field may hold 128 KiB) made it
// quadratic: seconds of CPU for one crafted mail.
const maxAddrLen = 256

// toInBody reports whether the body names the recipient's address: a
// newsletter says who it was sent to.
func toInBody(to, body []byte) bool {
	i := bytes.LastIndexByte(to, '<')
	if i >= 0 {
		to = to[i+1:]
		if j := bytes.IndexByte(to, '>'); j >= 0 {
			to = to[:j]
		}
	}
	if j := bytes.IndexByte(to, ','); j >= 0 {
		to = to[:j]
	}
	to = bytes.TrimSpace(to)
	if len(to) < 6 || len(to) > maxAddrLen || bytes.IndexByte(to, '@') <= 0 {
		return false
	}
	at := bytes.IndexByte(to, '@')
	body = body[:min(len(body), maxTextBytes)]
	for off := 0; ; {
		i := bytes.IndexByte(body[off:], '@')
		if i < 0 {
			return false
		}
		i += off
		if i >= at && i-at+len(to) <= len(body) && bytes.EqualFold(body[i-at:i-at+len(to)], to) {
			return true
		}
		off = i + 1
	}
}
