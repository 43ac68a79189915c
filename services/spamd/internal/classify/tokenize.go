package classify

import (
	"bytes"
	"mime"
	"slices"
	"strconv"
	"strings"
)

// Word length bounds. Shorter words carry little meaning; longer ones are
// base64 junk, hashes or glued-together spam text, and are summarised by a
// "skip:" token of their length instead (SpamBayes does the same).
const (
	minWord = 3
	maxWord = 24
)

// Token prefixes name where a token was seen, so "free" in the Subject and
// "free" in the body are different evidence. Only these header fields are
// read: the corpus (and real traffic) is full of relay and list headers
// that say more about who collected the mail than about what it is.
const (
	pSubject  = "s:"
	pFromName = "f:"
	pFromDom  = "fd:"
	pMailer   = "xm:"
	pMeta     = "m:" // structure: content types, encodings, counts, oddities
	pURL      = "url:"
	pURLPath  = "up:"
	pTag      = "tag:"
	pAttr     = "attr:"
	pSkip     = "skip:"
	pPair     = "p:"
	pShape    = "sh:" // shape of a header value (Message-ID, Date)
	pBody     = "b:"  // body-wide shape: shouting, !!!, money
	// pHeaderName and pHeaderOrder are the sender fields present and
	// their order (headershape.go).
	pHeaderName  = "hn:"
	pHeaderOrder = "ho:"
)

// tokenizer collects the set of distinct tokens of one mail. The zero value
// is not usable; use newTokenizer. Not safe for concurrent use.
type tokenizer struct {
	set     map[string]struct{}
	fromOrg []byte // From's organisational domain (orgDomain), for link/ID agreement
	// linkDoms are the distinct organisational domains of links (at most
	// maxLinkDoms), links the number of links seen (structure.go).
	linkDoms []string
	links    int
	// sig, when set, collects a signature of the body words tokenized
	// (structure.go: text against HTML of multipart/alternative).
	sig *wordSig
	// href is the organisational domain of the last tag's http(s) href.
	href     []byte
	buf      []byte // scratch for building prefix+word without allocating
	used     int    // decoded text bytes tokenized so far
	parts    int
	htmlText []byte // scratch for an HTML part's visible text
	wd       mime.WordDecoder
}

func newTokenizer() *tokenizer {
	// The WordDecoder has no CharsetReader: an encoded word in another
	// charset than UTF-8 or Latin-1 fails to decode and its raw bytes are
	// tokenized instead; they are still evidence.
	return &tokenizer{set: make(map[string]struct{}, 512)}
}

// Tokens returns the sorted, distinct tokens of one raw mail (header and
// body, LF or CRLF). It never fails: whatever cannot be parsed is skipped
// and noted as an "m:" token.
func Tokens(raw []byte) []string {
	t := newTokenizer()
	t.message(raw, 0)
	t.finish()
	return t.sorted()
}

func (t *tokenizer) sorted() []string {
	out := make([]string, 0, len(t.set))
	for k := range t.set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// add records prefix+word, allocating only for a new token.
func (t *tokenizer) add(prefix string, word []byte) {
	t.buf = append(append(t.buf[:0], prefix...), word...)
	if _, ok := t.set[string(t.buf)]; !ok {
		t.set[string(t.buf)] = struct{}{}
	}
}

func (t *tokenizer) addString(prefix, word string) {
	t.buf = append(append(t.buf[:0], prefix...), word...)
	if _, ok := t.set[string(t.buf)]; !ok {
		t.set[string(t.buf)] = struct{}{}
	}
}

// message tokenizes one RFC 5322 message: the chosen header fields, then
// its MIME tree.
func (t *tokenizer) message(raw []byte, depth int) {
	hdr, body := splitMessage(raw)
	fs := parseFields(hdr)
	if depth == 0 {
		t.headers(fs)
		if to := fs.get("to"); to != nil && toInBody(to, body) {
			t.addString(pMeta, "to:inbody")
		}
	}
	t.entity(fs, body, depth)
}

// headers tokenizes the header fields that describe the mail itself:
// Subject, the From display name and domain, the mailer, the recipient
// count, and a few priority/format fields spam tools set.
func (t *tokenizer) headers(fs fields) {
	if len(fs) == 0 {
		t.addString(pMeta, "noheader")
	}
	if s := fs.get("subject"); s != nil {
		dec := t.decodeHeader(s)
		t.words(pSubject, dec)
		if len(bytes.TrimSpace(dec)) == 0 {
			t.addString(pMeta, "subject:empty")
		}
		t.shape(pSubject, dec)
	} else {
		t.addString(pMeta, "subject:none")
	}
	if f := fs.get("from"); f != nil {
		t.from(t.decodeHeader(f))
	} else {
		t.addString(pMeta, "from:none")
	}
	t.consistency(fs)
	t.layout(fs)
	for _, name := range []string{"x-mailer", "user-agent"} {
		if v := fs.get(name); v != nil {
			// The product name, without version noise.
			w := v
			if i := bytes.IndexAny(w, "0123456789(["); i > 0 {
				w = w[:i]
			}
			t.add(pMailer, bytes.ToLower(bytes.TrimSpace(w)))
		}
	}
	if v := fs.get("x-priority"); len(v) > 0 {
		t.add(pMeta+"prio:", v[:1])
	}
	if fs.get("x-msmail-priority") != nil {
		t.addString(pMeta, "msmail-priority")
	}
	if id := fs.get("message-id"); id == nil {
		t.addString(pMeta, "msgid:none")
	} else if at := bytes.LastIndexByte(id, '@'); at < 0 {
		t.addString(pMeta, "msgid:noat")
	} else {
		t.addShape(pShape+"mid:", bytes.TrimLeft(id[:at], "<"))
	}
	if d := fs.get("date"); d == nil {
		t.addString(pMeta, "date:none")
	} else {
		t.addShape(pShape+"date:", d)
	}
	n := 0
	for _, name := range []string{"to", "cc"} {
		if v := fs.get(name); v != nil {
			n += bytes.Count(v, []byte("@"))
			if bytes.Contains(bytes.ToLower(v), []byte("undisclosed")) {
				t.addString(pMeta, "to:undisclosed")
			}
		}
	}
	t.addString(pMeta+"rcpts:", bucket(n))
}

// from tokenizes a From value: display-name words and the address domain
// with its parent domains. The local part is left out: it is mostly unique
// and in this corpus rewritten.
func (t *tokenizer) from(v []byte) {
	addr := v
	name := []byte(nil)
	if i := bytes.LastIndexByte(v, '<'); i >= 0 {
		name = v[:i]
		addr = v[i+1:]
		if j := bytes.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	} else if i := bytes.IndexByte(v, '('); i >= 0 {
		name = v[i:]
		addr = v[:i]
	}
	t.words(pFromName, name)
	at := bytes.LastIndexByte(addr, '@')
	if at < 0 {
		t.addString(pMeta, "from:noat")
		return
	}
	dom := bytes.ToLower(bytes.Trim(addr[at+1:], " \t\"'.>"))
	if len(dom) == 0 || len(dom) > 128 {
		return
	}
	t.fromOrg = orgDomain(dom)
	t.add(pFromDom, dom)
	for i := bytes.IndexByte(dom, '.'); i >= 0 && bytes.Count(dom[i+1:], []byte(".")) >= 1; i = bytes.IndexByte(dom, '.') {
		dom = dom[i+1:]
		t.add(pFromDom, dom)
	}
	if bytes.ContainsAny(addr[:at], "0123456789") {
		t.addString(pMeta, "from:digits")
	}
}

// decodeHeader decodes RFC 2047 encoded words; on failure the raw value is
// used, since its bytes are still evidence.
func (t *tokenizer) decodeHeader(v []byte) []byte {
	if !bytes.Contains(v, []byte("=?")) {
		return v
	}
	t.addString(pMeta, "hdr:encoded")
	s, err := t.wd.DecodeHeader(string(v))
	if err != nil {
		return v
	}
	return []byte(s)
}

// shape adds tokens about how a text looks rather than what it says:
// shouting, money and exclamation marks are classic spam tells.
func (t *tokenizer) shape(prefix string, s []byte) {
	var upper, letters int
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z':
			upper++
			letters++
		case c >= 'a' && c <= 'z':
			letters++
		}
	}
	if letters >= 8 && upper*10 >= letters*8 {
		t.addString(prefix, "#caps")
	}
	if bytes.Contains(s, []byte("!!")) {
		t.addString(prefix, "#!!")
	} else if bytes.IndexByte(s, '!') >= 0 {
		t.addString(prefix, "#!")
	}
	if bytes.IndexByte(s, '$') >= 0 {
		t.addString(prefix, "#$")
	}
}

// entity tokenizes one MIME entity given its parsed header.
func (t *tokenizer) entity(fs fields, body []byte, depth int) {
	t.parts++
	if t.parts > maxParts || depth > maxDepth {
		t.addString(pMeta, "mime:toodeep")
		return
	}
	typ, params, bad := mediaType(fs.get("content-type"))
	if bad {
		t.addString(pMeta, "mime:badtype")
	}
	t.addString(pMeta+"ct:", typ)
	if cs := params["charset"]; cs != "" && len(cs) < 32 {
		t.addString(pMeta+"charset:", strings.ToLower(cs))
	}
	cte := strings.ToLower(strings.TrimSpace(string(fs.get("content-transfer-encoding"))))
	if cte != "" && len(cte) < 32 {
		t.addString(pMeta+"cte:", cte)
	}
	if fn := filename(fs, params); fn != "" {
		if i := strings.LastIndexByte(fn, '.'); i >= 0 && len(fn)-i <= 6 {
			t.addString(pMeta+"ext:", strings.ToLower(fn[i+1:]))
		}
	}
	switch {
	case strings.HasPrefix(typ, "multipart/"):
		b := params["boundary"]
		if b == "" {
			t.addString(pMeta, "mime:noboundary")
			t.text(body)
			return
		}
		ps := multipartBodies(body, b)
		if len(ps) == 0 {
			t.addString(pMeta, "mime:noparts")
			t.text(body)
		}
		alt := typ == "multipart/alternative"
		var plain, html wordSig
		var hasPlain, hasHTML bool
		saved := t.sig
		for _, p := range ps {
			h, pb := splitPart(p)
			pf := parseFields(h)
			if alt {
				t.sig = nil
				switch ct, _, _ := mediaType(pf.get("content-type")); ct {
				case "text/plain":
					t.sig, hasPlain = &plain, true
				case "text/html":
					t.sig, hasHTML = &html, true
				}
			}
			t.entity(pf, pb, depth+1)
		}
		t.sig = saved
		if hasPlain && hasHTML {
			t.alternative(&plain, &html)
		}
	case typ == "message/rfc822":
		dec, _ := decodeBody(cte, body, 0)
		t.message(dec, depth+1)
	case strings.HasPrefix(typ, "text/") || typ == "":
		dec, bad := decodeBody(cte, body, maxTextBytes)
		if bad {
			t.addString(pMeta, "mime:badencoding")
		}
		if typ == "text/html" || looksHTML(dec) {
			t.html(dec)
		} else {
			t.text(dec)
		}
	}
}

// splitPart splits a MIME part into header and body. Unlike a message, a
// part may start with a blank line (no header at all).
func splitPart(p []byte) (hdr, body []byte) {
	if len(p) > 0 && (p[0] == '\n' || bytes.HasPrefix(p, []byte("\r\n"))) {
		return nil, p[bytes.IndexByte(p, '\n')+1:]
	}
	return splitMessage(p)
}

func filename(fs fields, ctParams map[string]string) string {
	if n := ctParams["name"]; n != "" {
		return n
	}
	if cd := fs.get("content-disposition"); cd != nil {
		if _, ps, err := mime.ParseMediaType(string(cd)); err == nil {
			return ps["filename"]
		}
	}
	return ""
}

// looksHTML catches HTML sent as text/plain or without a type, a common
// spam habit.
func looksHTML(b []byte) bool {
	head := b[:min(len(b), 2048)]
	return bytes.Contains(bytes.ToLower(head), []byte("<html")) || bytes.Contains(bytes.ToLower(head), []byte("<body"))
}

// budget trims b to the text budget left for this mail.
func (t *tokenizer) budget(b []byte) []byte {
	left := maxTextBytes - t.used
	if left <= 0 {
		return nil
	}
	if len(b) > left {
		b = b[:left]
	}
	t.used += len(b)
	return b
}

// text tokenizes plain body text: URLs, then words.
func (t *tokenizer) text(b []byte) {
	b = t.budget(b)
	t.urls(b)
	t.words("", b)
	t.bodyShape(b)
}

// bodyShape adds body-wide tells: long runs of capitals, "!!!", "$$$".
func (t *tokenizer) bodyShape(b []byte) {
	run, maxRun := 0, 0
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			run++
			maxRun = max(maxRun, run)
		case c == ' ' || c == '!' || c == '$' || c >= '0' && c <= '9':
		default:
			run = 0
		}
	}
	if maxRun >= 20 {
		t.addString(pBody, "capsrun")
	}
	if bytes.Contains(b, []byte("!!!")) {
		t.addString(pBody, "!!!")
	}
	if bytes.Contains(b, []byte("$$")) {
		t.addString(pBody, "$$")
	}
	if hasSpacedWord(b) {
		t.addString(pBody, "spaced")
	}
}

// isWordByte reports whether c may be part of a word. Bytes >= 0x80 are
// word bytes so 8-bit text in any charset forms words (and charsets a
// reader does not use become strong tokens themselves).
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80 ||
		c == '$' || c == '\'' || c == '-' || c == '.' || c == '_' || c == '%'
}

// words adds every word of b under prefix, lower-cased. Body text (no
// prefix) also gets word pairs ("click here", "remove you"): phrases
// separate spam from ham far better than their words alone.
func (t *tokenizer) words(prefix string, b []byte) {
	var w [maxWord]byte
	var prev [maxWord + 1]byte
	np := 0
	for i := 0; i < len(b); {
		for i < len(b) && !isWordByte(b[i]) {
			i++
		}
		j := i
		for j < len(b) && isWordByte(b[j]) {
			j++
		}
		word := bytes.Trim(b[i:j], "'.-_")
		i = j
		switch {
		case len(word) < minWord:
		case len(word) > maxWord:
			cls := "x"
			if word[0] >= 0x80 {
				cls = "8"
			}
			t.addString(prefix+pSkip, cls+strconv.Itoa(len(word)/10*10))
			np = 0
		default:
			n := copy(w[:], word)
			for k := range n {
				if c := w[k]; c >= 'A' && c <= 'Z' {
					w[k] = c + 'a' - 'A'
				}
			}
			t.add(prefix, w[:n])
			if prefix == "" {
				if t.sig != nil {
					t.sig.add(w[:n])
				}
				if isLeet(word) {
					t.addString(pBody, "leet")
				}
				if np > 0 {
					t.buf = append(append(append(t.buf[:0], pPair...), prev[:np]...), w[:n]...)
					if _, ok := t.set[string(t.buf)]; !ok {
						t.set[string(t.buf)] = struct{}{}
					}
				}
				np = copy(prev[:], w[:n])
				prev[np] = ' '
				np++
			}
		}
	}
}

// urls adds tokens for the http(s) URLs in b: host and parent domains, a
// numeric host, an explicit port or userinfo (classic phishing tells), and
// path words.
func (t *tokenizer) urls(b []byte) {
	for n := 0; n < 200; n++ {
		i := bytes.Index(b, []byte("http"))
		if i < 0 {
			return
		}
		b = b[i+4:]
		switch {
		case bytes.HasPrefix(b, []byte("://")):
			b = b[3:]
		case bytes.HasPrefix(b, []byte("s://")):
			b = b[4:]
		default:
			continue
		}
		end := bytes.IndexAny(b, " \t\r\n\"'<>()[]{}")
		if end < 0 {
			end = len(b)
		}
		t.url(b[:end])
		b = b[end:]
	}
}

// url tokenizes one URL without its scheme.
func (t *tokenizer) url(u []byte) {
	host := u
	path := []byte(nil)
	if i := bytes.IndexAny(u, "/?#"); i >= 0 {
		host, path = u[:i], u[i:]
	}
	if i := bytes.LastIndexByte(host, '@'); i >= 0 {
		t.addString(pURL, "#userinfo")
		host = host[i+1:]
	}
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		t.addString(pURL, "#port")
		host = host[:i]
	}
	// An href value may span lines; a host never does.
	if i := bytes.IndexAny(host, " \t\r\n"); i >= 0 {
		host = host[:i]
	}
	// Percent-escaped host names ("%77%77%77.") hide a link's domain from
	// filters; browsers undo them, so do we.
	if bytes.IndexByte(host, '%') >= 0 {
		t.addString(pURL, "#hostescaped")
		host = unescapeHost(host)
	}
	host = bytes.ToLower(bytes.TrimRight(host, "."))
	if len(host) == 0 || len(host) > 100 {
		return
	}
	t.link(host, path)
	if isNumericHost(host) {
		t.addString(pURL, "#ip")
	} else {
		if t.fromOrg != nil {
			if bytes.Equal(orgDomain(host), t.fromOrg) {
				t.addString(pURL, "#fromdom")
			} else {
				t.addString(pURL, "#otherdom")
			}
		}
		t.add(pURL, host)
		for i := bytes.IndexByte(host, '.'); i >= 0 && bytes.Count(host[i+1:], []byte(".")) >= 1; i = bytes.IndexByte(host, '.') {
			host = host[i+1:]
			t.add(pURL, host)
		}
	}
	if bytes.IndexByte(u, '%') >= 0 {
		t.addString(pURL, "#escaped")
	}
	if len(path) > 256 {
		path = path[:256]
	}
	t.words(pURLPath, path)
}

// unescapeHost decodes %XX escapes in a host name; a malformed escape is
// kept as written.
func unescapeHost(h []byte) []byte {
	out := make([]byte, 0, len(h))
	for i := 0; i < len(h); i++ {
		if h[i] == '%' && i+2 < len(h) && isHex(h[i+1]) && isHex(h[i+2]) {
			out = append(out, unhex(h[i+1])<<4|unhex(h[i+2]))
			i += 2
			continue
		}
		out = append(out, h[i])
	}
	return out
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func isNumericHost(h []byte) bool {
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c == '.') {
			return false
		}
	}
	return true
}

// bucket maps a count to a coarse, bounded label.
func bucket(n int) string {
	switch {
	case n == 0:
		return "0"
	case n == 1:
		return "1"
	case n <= 3:
		return "2-3"
	case n <= 10:
		return "4-10"
	default:
		return "many"
	}
}

// consistency adds tokens on whether the fields that name the sender agree
// with each other: the Message-ID and Reply-To domains against From's
// organisational domain, and To against From. A sender that writes its own
// mail tends to be consistent; forged and bulk-relayed spam tends not to.
// It reads only the sender's own fields, never relay headers.
func (t *tokenizer) consistency(fs fields) {
	if t.fromOrg == nil {
		return
	}
	if id := fs.get("message-id"); id != nil {
		if at := bytes.LastIndexByte(id, '@'); at >= 0 {
			dom := bytes.ToLower(bytes.Trim(id[at+1:], " <>"))
			t.addString(pMeta, "msgid:"+agree(orgDomain(dom), t.fromOrg))
		}
	}
	if rt := fs.get("reply-to"); rt != nil {
		if at := bytes.LastIndexByte(rt, '@'); at >= 0 {
			dom := bytes.ToLower(bytes.Trim(rt[at+1:], " <>\"'"))
			t.addString(pMeta, "replyto:"+agree(orgDomain(dom), t.fromOrg))
		} else {
			t.addString(pMeta, "replyto:noat")
		}
	}
	if to := fs.get("to"); to != nil {
		if bytes.IndexByte(to, '<') > 0 && bytes.IndexByte(bytes.TrimSpace(to), '<') > 0 {
			t.addString(pMeta, "to:named")
		}
		if at := bytes.LastIndexByte(to, '@'); at >= 0 {
			dom := bytes.ToLower(bytes.Trim(to[at+1:], " <>\"'"))
			if agree(orgDomain(dom), t.fromOrg) == "same" {
				t.addString(pMeta, "to:fromdom")
			}
		}
	}
}

func agree(a, b []byte) string {
	if len(a) > 0 && bytes.Equal(a, b) {
		return "same"
	}
	return "other"
}

// orgDomain approximates a host's organisational domain: its last two
// labels, or three under a two-letter country code with a short second
// level ("co.uk", "com.au"). No public-suffix list: this only has to tell
// "same sender" from "someone else" for a few tokens.
func orgDomain(host []byte) []byte {
	host = bytes.TrimRight(host, ".")
	labels := bytes.Split(host, []byte("."))
	n := len(labels)
	if n < 2 {
		return nil
	}
	keep := 2
	if n >= 3 && len(labels[n-1]) == 2 && len(labels[n-2]) <= 3 {
		keep = 3
	}
	return bytes.Join(labels[n-keep:], []byte("."))
}

// addShape adds the shape of a header value: letters become "a", digits
// "9", runs collapsed, punctuation kept, at most 24 bytes. Mail programs
// write Message-IDs and Dates each in their own shape, and 2002 spamware
// in a few tell-tale ones.
func (t *tokenizer) addShape(prefix string, v []byte) {
	var sh [24]byte
	n := 0
	var last byte
	for _, c := range v {
		var k byte
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			k = 'a'
		case c >= '0' && c <= '9':
			k = '9'
		case c == ' ' || c == '\t':
			k = ' '
		case c >= 0x80:
			k = '8'
		default:
			k = c
		}
		if k == last && (k == 'a' || k == '9' || k == ' ') {
			continue
		}
		last = k
		if n == len(sh) {
			break
		}
		sh[n] = k
		n++
	}
	t.add(prefix, sh[:n])
}
