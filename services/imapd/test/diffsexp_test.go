package test

import (
	"mime"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// sexp is a parsed response value: an atom, a string or a list.
type sexp struct {
	atom string
	str  *string
	list []sexp
	isL  bool
}

func (s sexp) String() string {
	switch {
	case s.isL:
		parts := make([]string, len(s.list))
		for i, e := range s.list {
			parts[i] = e.String()
		}
		// One space between list elements, also between the addresses of
		// an ENVELOPE address list, which are written without one (RFC
		// 9051 env-from; TestEnvelopeAddressesDovecot checks the form).
		return "(" + strings.Join(parts, " ") + ")"
	case s.str != nil:
		return strconv.Quote(*s.str)
	}
	return s.atom
}

func (s sexp) text() string {
	if s.str != nil {
		return *s.str
	}
	return ""
}

func strSexp(v string) sexp { return sexp{str: &v} }

var nilSexp = sexp{atom: "NIL"}

// parseSexp parses the canonical form made by canonStrings (strings in
// Go quotes); brackets in atoms (BODY[HEADER.FIELDS (A B)]) are kept
// whole.
func parseSexp(s string) (sexp, string) {
	s = strings.TrimLeft(s, " ")
	switch {
	case strings.HasPrefix(s, "("):
		out := sexp{isL: true}
		s = s[1:]
		for {
			s = strings.TrimLeft(s, " ")
			if s == "" {
				return out, ""
			}
			if s[0] == ')' {
				return out, s[1:]
			}
			var e sexp
			e, s = parseSexp(s)
			out.list = append(out.list, e)
		}
	case strings.HasPrefix(s, `"`):
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' {
				j++
			}
		}
		v, err := strconv.Unquote(s[:min(j+1, len(s))])
		if err != nil {
			v = s[:min(j+1, len(s))]
		}
		return strSexp(v), s[min(j+1, len(s)):]
	}
	depth, j := 0, 0
	for ; j < len(s); j++ {
		c := s[j]
		if c == '[' {
			depth++
		} else if c == ']' {
			depth--
		} else if depth == 0 && (c == ' ' || c == '(' || c == ')') {
			break
		}
	}
	return sexp{atom: s[:j]}, s[j:]
}

// normFetch normalises the item list of a FETCH response.
func (n *normaliser) normFetch(items sexp) sexp {
	type pair struct {
		name string
		val  sexp
	}
	var ps []pair
	for i := 0; i+1 < len(items.list); i += 2 {
		name := strings.ToUpper(items.list[i].atom)
		// go-imap echoes HEADER.FIELDS names quoted, Dovecot as atoms:
		// both are astrings (RFC 9051 §9 header-fld-name).
		name = strings.ReplaceAll(name, `"`, "")
		v := items.list[i+1]
		switch {
		case name == "FLAGS":
			v = normFlags(v)
		case name == "UID":
			u, _ := strconv.Atoi(v.atom)
			v = sexp{atom: n.label(u)}
		case name == "ENVELOPE":
			v = normEnvelope(v)
		case name == "BODYSTRUCTURE" || name == "BODY":
			v = normBody(v)
		case strings.Contains(name, "HEADER.FIELDS") && strings.HasSuffix(name, ">") && v.str != nil && *v.str == "\r":
			// Dovecot 2.3.19 answers a partial of a HEADER.FIELDS that
			// matched no field ("\r\n") from offset 0 whatever the offset
			// asked: <1.1000> gives "\r", where imapd gives "\n".
			v = strSexp("\n")
		}
		// A repeated item (FETCH 1 (FLAGS FLAGS)): Dovecot answers it
		// once, go-imap once for each time it was asked.
		if slices.ContainsFunc(ps, func(p pair) bool { return p.name == name && p.val.String() == v.String() }) {
			continue
		}
		ps = append(ps, pair{name, v})
	}
	// RFC 9051 §7.5.2 sets no order for FETCH items (imapd puts UID first).
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	out := sexp{isL: true}
	for _, p := range ps {
		out.list = append(out.list, sexp{atom: p.name}, p.val)
	}
	return out
}

// normFlags sorts a flag list (RFC 9051 sets no order) and drops
// \Recent (docs/imapd.md §3).
func normFlags(v sexp) sexp {
	out := sexp{isL: true}
	for _, f := range v.list {
		if !strings.EqualFold(f.atom, `\Recent`) {
			out.list = append(out.list, f)
		}
	}
	sort.Slice(out.list, func(i, j int) bool { return out.list[i].atom < out.list[j].atom })
	return out
}

var wordDecoder = &mime.WordDecoder{}

// envText: Dovecot returns header text raw and squeezes runs of
// whitespace; imapd (mimetree) decodes RFC 2047 words and keeps the
// whitespace, and sends non-ASCII bytes as a UTF-8 encoded word (quoted
// strings are 7-bit). Both are compared decoded and squeezed
// (docs/imapd.md "Compared with Dovecot").
func envText(v sexp) sexp {
	if v.str == nil {
		return v
	}
	s := *v.str
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		s = d
	}
	return strSexp(strings.Join(strings.Fields(s), " "))
}

func normEnvelope(v sexp) sexp {
	if !v.isL || len(v.list) != 10 {
		return v
	}
	// Date, Subject, In-Reply-To and Message-ID are the header's text on
	// both sides (compared as they are); the address lists differ only
	// in 8-bit display names (dovecotAddrs).
	e := sexp{isL: true, list: append([]sexp(nil), v.list...)}
	// But for their leading whitespace: imapd sends none. Dovecot 2.3.19
	// sends none either for a plain FETCH ENVELOPE (TestEnvelopeDovecot
	// compares every corpus mail's exactly), but in a random script it
	// once sent all but one of the spaces after "Date:" and
	// "Message-ID:" (hard-ham-1-00186, TWINMX_SEED=1796037321237926836
	// TWINMX_DIFF_MAILS=200 TWINMX_STEPS=1500).
	for _, i := range []int{0, 1, 8, 9} {
		if d := e.list[i].str; d != nil {
			e.list[i] = strSexp(strings.TrimLeft(*d, " \t"))
		}
	}
	for i := 2; i <= 7; i++ {
		e.list[i] = dovecotAddrs(e.list[i])
	}
	return e
}

// normBody: Dovecot writes text parts' implied charset (RFC 2045 §5.2
// "us-ascii"), imapd does not; Dovecot keeps the transfer encoding's
// case, imapd lower-cases it (case-insensitive, RFC 2045 §6.1).
func normBody(v sexp) sexp {
	if !v.isL || len(v.list) == 0 {
		return v
	}
	b := sexp{isL: true, list: append([]sexp(nil), v.list...)}
	if b.list[0].isL { // multipart
		i := 0
		for ; i < len(b.list) && b.list[i].isL; i++ {
			b.list[i] = normBody(b.list[i])
		}
		if i < len(b.list) && b.list[i].str != nil { // the subtype
			b.list[i] = strSexp(strings.ToLower(*b.list[i].str))
		}
		if i+1 < len(b.list) { // after the subtype: the parameters
			b.list[i+1] = sortParams(b.list[i+1])
		}
		return b
	}
	if len(b.list) < 7 {
		return b
	}
	b.list[2] = sortParams(b.list[2])
	typ := strings.ToLower(b.list[0].text())
	if typ == "text" {
		p := b.list[2]
		has := false
		for i := 0; i+1 < len(p.list); i += 2 {
			has = has || strings.EqualFold(p.list[i].text(), "charset")
		}
		if !has {
			np := sexp{isL: true, list: append(append([]sexp(nil), p.list...), strSexp("charset"), strSexp("us-ascii"))}
			b.list[2] = sortParams(np)
		}
	}
	// Types, subtypes and encodings are case-insensitive (RFC 2045
	// §5.1, §6.1): Dovecot keeps the header's case, imapd lower-cases.
	for _, k := range []int{0, 1, 5} {
		if b.list[k].str != nil {
			b.list[k] = strSexp(strings.ToLower(*b.list[k].str))
		}
	}
	for i := 7; i < len(b.list); i++ {
		// The disposition's value is case-insensitive (RFC 2183 §2):
		// Dovecot keeps the header's case ("Inline"), imapd lower-cases.
		if d := b.list[i]; d.isL && len(d.list) == 2 && d.list[0].str != nil && slices.Contains([]string{"inline", "attachment"}, strings.ToLower(*d.list[0].str)) {
			b.list[i] = sexp{isL: true, list: []sexp{strSexp(strings.ToLower(*d.list[0].str)), d.list[1]}}
		}
	}
	if typ == "message" && strings.EqualFold(b.list[1].text(), "rfc822") && len(b.list) > 8 {
		b.list[7] = normEnvelope(b.list[7])
		b.list[8] = normBody(b.list[8])
	}
	return b
}

// sortParams sorts a body parameter list by name: go-imap keeps
// parameters in a map and writes them sorted, Dovecot in header order
// (RFC 9051 §7.5.2 sets no order).
func sortParams(p sexp) sexp {
	if !p.isL {
		return p
	}
	type kv struct{ k, v sexp }
	var kvs []kv
	for i := 0; i+1 < len(p.list); i += 2 {
		v := p.list[i+1]
		if strings.EqualFold(p.list[i].text(), "charset") && v.str != nil {
			// Charset names are case-insensitive (RFC 2046 §4.1.2);
			// Dovecot writes "us-ascii" for some "US-ASCII".
			v = strSexp(strings.ToLower(*v.str))
		}
		if v.str != nil && strings.Contains(*v.str, `\`) {
			// `name="C:\WINDOWS\x.htm"`: Go's parser keeps a backslash
			// before a letter (Windows paths, as browsers read them),
			// Dovecot drops it (a quoted pair).
			v = strSexp(strings.ReplaceAll(*v.str, `\`, ""))
		}
		k := p.list[i]
		if k.str != nil { // names are case-insensitive (RFC 2045 §5.1)
			k = strSexp(strings.ToLower(*k.str))
		}
		kvs = append(kvs, kv{k, v})
	}
	sort.SliceStable(kvs, func(i, j int) bool {
		return strings.ToLower(kvs[i].k.text()) < strings.ToLower(kvs[j].k.text())
	})
	out := sexp{isL: true}
	for _, e := range kvs {
		out.list = append(out.list, e.k, e.v)
	}
	return out
}
