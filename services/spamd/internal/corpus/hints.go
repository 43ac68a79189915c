package corpus

import (
	"bytes"
	"strings"
)

// The SpamAssassin corpus carries traces of how it was collected that real
// traffic does not have (corpus README): the ham is mostly mailing-list
// traffic, so list names, list headers and list footers say "ham", and the
// maintainers rewrote the recipients to zzzz@, jm@, yyyy@ and
// spamassassin.taint.org. StripHints removes them so an evaluation shows
// what a classifier can do without them.

// hintFields are header fields removed whole: list and relay headers that
// name the list or the collector's own hosts.
var hintFields = map[string]bool{
	"sender": true, "errors-to": true, "precedence": true, "x-beenthere": true,
	"x-loop": true, "mailing-list": true, "delivered-to": true, "x-original-to": true,
	"return-path": true, "received": true, "x-mailman-version": true,
	"x-egroups-return": true, "x-apparently-to": true, "mail-followup-to": true,
	"x-list": true, "x-list-id": true, "x-mailing-list": true, "x-original-date": true,
	"delivery-date": true, "x-eudora2unix": true, "x-mailscanner": true,
}

// hintFieldPrefixes are header name prefixes removed whole.
var hintFieldPrefixes = []string{"list-", "x-spam-", "x-mailman", "x-beenthere", "x-yahoo-", "x-egroups"}

// hintWords are replaced by "x" wherever they appear (any case): list
// names and the rewritten addresses and domains.
var hintWords = []string{
	"spamassassin.taint.org", "taint.org", "netnoteinc.com", "zzzzteana", "zzzz", "yyyy", "jm@",
	"spamassassin-talk", "spamassassin-devel", "spamassassin-sightings", "spamassassin-commits",
	"razor-users", "exmh-workers", "exmh-users", "exmh", "ilug-social", "ilug", "linux.ie",
	"xent.com", "fork@", "rpm-zzzlist", "rpm-list", "freshrpms", "secprog", "webmake-talk",
	"example.sourceforge.net", "lists.sourceforge.net", "spambayes", "satalk", "sadev", "sacvs",
}

// StripHints returns raw without the corpus's collection hints: the header
// fields above, leading "[list]" tags in the Subject, mailing-list footers,
// and the hint words. It never fails; raw is not modified.
func StripHints(raw []byte) []byte {
	hdr, body := splitRaw(raw)
	var out bytes.Buffer
	out.Grow(len(raw))
	skipping := false
	for _, line := range bytes.SplitAfter(hdr, []byte("\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		name := ""
		if c := bytes.IndexByte(line, ':'); c > 0 {
			name = strings.ToLower(strings.TrimSpace(string(line[:c])))
		}
		skipping = hintFields[name] || hasAnyPrefix(name, hintFieldPrefixes)
		if skipping {
			continue
		}
		if name == "subject" {
			line = stripSubjectTags(line)
		}
		out.Write(line)
	}
	out.Write(stripFooters(body))
	return replaceFold(out.Bytes(), hintWords)
}

// splitRaw splits at the first empty line, keeping the separator with the
// body. A mail without one is all header.
func splitRaw(raw []byte) (hdr, body []byte) {
	for off := 0; off < len(raw); {
		nl := bytes.IndexByte(raw[off:], '\n')
		if nl < 0 {
			break
		}
		line := raw[off : off+nl]
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return raw[:off], raw[off:]
		}
		off += nl + 1
	}
	return raw, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// stripSubjectTags removes "[tag]" list tags (up to 24 bytes each) at the
// start of a Subject value, also after "Re:"/"Fwd:".
func stripSubjectTags(line []byte) []byte {
	c := bytes.IndexByte(line, ':')
	head, v := line[:c+1], line[c+1:]
	var kept []byte
	for {
		t := bytes.TrimLeft(v, " \t")
		switch {
		case len(t) > 0 && t[0] == '[':
			e := bytes.IndexByte(t, ']')
			if e < 0 || e > 24 {
				return append(append(append([]byte(nil), head...), kept...), v...)
			}
			v = t[e+1:]
		case len(t) >= 3 && bytes.EqualFold(t[:3], []byte("re:")):
			kept = append(kept, " Re:"...)
			v = t[3:]
		case len(t) >= 4 && bytes.EqualFold(t[:4], []byte("fwd:")):
			kept = append(kept, " Fwd:"...)
			v = t[4:]
		default:
			return append(append(append([]byte(nil), head...), kept...), v...)
		}
	}
}

// stripFooters removes Mailman footers: a line of 20+ underscores followed
// (within two lines) by "... mailing list", and the lines after it up to
// the next blank line.
func stripFooters(body []byte) []byte {
	lines := bytes.SplitAfter(body, []byte("\n"))
	out := make([]byte, 0, len(body))
	for i := 0; i < len(lines); i++ {
		l := bytes.TrimRight(lines[i], "\r\n")
		if len(l) >= 20 && len(bytes.Trim(l, "_")) == 0 && footerFollows(lines[i+1:]) {
			for i+1 < len(lines) && len(bytes.TrimSpace(lines[i+1])) > 0 {
				i++
			}
			continue
		}
		out = append(out, lines[i]...)
	}
	return out
}

func footerFollows(lines [][]byte) bool {
	for _, l := range lines[:min(len(lines), 2)] {
		if bytes.Contains(bytes.ToLower(l), []byte("mailing list")) {
			return true
		}
	}
	return false
}

// replaceFold replaces every ASCII-case-insensitive occurrence of the
// words (the first listed wins at a position, so longer words come first)
// with "x".
func replaceFold(b []byte, words []string) []byte {
	var first [256]bool
	for _, w := range words {
		first[w[0]] = true
	}
	lower := asciiLower(b)
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		hit := 0
		if first[lower[i]] {
			for _, w := range words {
				if bytes.HasPrefix(lower[i:], []byte(w)) {
					hit = len(w)
					break
				}
			}
		}
		if hit > 0 {
			out = append(out, 'x')
			i += hit
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
