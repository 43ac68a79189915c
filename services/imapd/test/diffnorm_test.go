package test

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// normaliser turns one server's transcript into comparable lines. Each
// rule names why the difference it removes is not a bug: RFC 9051 for
// what is server-specific by definition, docs/imapd.md ("Compared with
// Dovecot") for imapd's deliberate differences.
type normaliser struct {
	folder string                    // selected folder
	labels map[string]map[int]string // folder → UID → "u<n>", in order of first sight
}

func newNormaliser() *normaliser {
	return &normaliser{labels: map[string]map[int]string{}}
}

var (
	// RFC 9051 §7.1: the text after the response code is human-readable
	// and server-specific (Dovecot adds timings like "(0.001 + 0.000 secs)").
	statusRe = regexp.MustCompile(`^(\*|TAG) (OK|NO|BAD|BYE|PREAUTH)( \[[^\]]*\])?( .*)?$`)
	tagRe    = regexp.MustCompile(`^T\d+ `)
	// UIDVALIDITY and UIDNEXT are per-server numbers (docs/imapd.md §2:
	// UIDs are row numbers, UIDVALIDITY an offset plus a row number).
	uidValidityRe = regexp.MustCompile(`\[(UIDVALIDITY|UIDNEXT) \d+\]`)
	// COPYUID names UIDs of both servers' numbering (docs/imapd.md §2); the
	// FETCH of the target folder compares the copies themselves.
	copyUIDRe   = regexp.MustCompile(`\[COPYUID [^\]]*\]`)
	fetchRe     = regexp.MustCompile(`^\* (\d+) FETCH (\(.*)$`)
	statusBoxRe = regexp.MustCompile(`^\* STATUS "([A-Za-z0-9]+)" \(`)
	flagsRe     = regexp.MustCompile(`^(\* FLAGS |\* OK \[PERMANENTFLAGS )(\([^)]*\))(.*)$`)
	// \Recent is not kept (docs/imapd.md §3; RFC 9051 dropped it).
	recentRe     = regexp.MustCompile(`^\* \d+ RECENT$`)
	recentFlagRe = regexp.MustCompile(` ?\\Recent\b ?`)
	selectRe     = regexp.MustCompile(`(?i)^(?:UID )?(SELECT|EXAMINE) (\S+)`)
	storeRe      = regexp.MustCompile(`(?i)^(?:UID )?STORE `)
)

// command is called before the responses of cmd are normalised.
func (n *normaliser) command(cmd string) {
	if m := selectRe.FindStringSubmatch(cmd); m != nil {
		n.folder = strings.Trim(m[2], `"`)
	}
}

// label names a UID by the order in which the transcript first showed
// it in the selected folder: both servers list mails in the same order,
// with different numbers (docs/imapd.md §2).
func (n *normaliser) label(uid int) string {
	m := n.labels[n.folder]
	if m == nil {
		m = map[int]string{}
		n.labels[n.folder] = m
	}
	if l, ok := m[uid]; ok {
		return l
	}
	l := fmt.Sprintf("u%d", len(m)+1)
	m[uid] = l
	return l
}

// response returns the normalised response, or "" to drop it.
func (n *normaliser) response(cmd string, r response) string {
	var b strings.Builder
	for i, p := range r.parts {
		if i < len(r.lits) {
			// RFC 3516: a server may send BINARY data as a literal8
			// (~{n}) even without NUL in it; go-imap always does.
			p = strings.TrimSuffix(p, "~")
		}
		b.WriteString(canonStrings(p))
		if i < len(r.lits) {
			b.WriteString(strconv.Quote(string(r.lits[i])))
		}
	}
	s := b.String()
	if recentRe.MatchString(s) {
		return ""
	}
	// Dovecot answers STORE with a FETCH only for mails whose flags
	// changed, imapd for every mail named (RFC 9051 §6.4.6 allows
	// both); the random script fetches the flags after each STORE.
	if storeRe.MatchString(cmd) && fetchRe.MatchString(s) {
		return ""
	}
	// Dovecot announces new keywords with FLAGS and PERMANENTFLAGS at
	// the next command (RFC 9051 §7.3.5 allows it at any time); imapd
	// does not (see keywordsOnly).
	if !selectRe.MatchString(cmd) && flagsRe.MatchString(s) {
		return ""
	}
	s = tagRe.ReplaceAllString(s, "TAG ")
	if m := statusRe.FindStringSubmatch(s); m != nil {
		s = m[1] + " " + m[2] + m[3]
		if m[2] == "BAD" {
			// A response code is optional (RFC 9051 §7.1): go-imap sends
			// [CLIENTBUG] with some BADs, Dovecot none.
			s = m[1] + " BAD"
		}
	}
	s = uidValidityRe.ReplaceAllString(s, "[$1 *]")
	s = copyUIDRe.ReplaceAllString(s, "[COPYUID *]")
	s = recentFlagRe.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, " ") && strings.HasSuffix(m, " ") {
			return " "
		}
		return ""
	})
	if m := fetchRe.FindStringSubmatch(s); m != nil {
		items, _ := parseSexp(m[2])
		s = "* " + m[1] + " FETCH " + n.normFetch(items).String()
	}
	// The mailbox name is an astring: quoted by go-imap, an atom by Dovecot.
	s = statusBoxRe.ReplaceAllString(s, "* STATUS $1 (")
	if m := flagsRe.FindStringSubmatch(s); m != nil {
		fl, _ := parseSexp(m[2])
		// RFC 9051 §7.3.5: FLAGS lists "at a minimum, the system-defined
		// flags". Dovecot adds the keywords used in the folder; imapd
		// keeps keywords per mail, not per folder, and lists none.
		fl.list = slices.DeleteFunc(fl.list, func(f sexp) bool { return !strings.HasPrefix(f.atom, `\`) })
		s = m[1] + normFlags(fl).String() + m[3]
	}
	if strings.HasPrefix(strings.ToUpper(cmd), "UID SEARCH") && strings.HasPrefix(s, "* SEARCH") {
		f := strings.Fields(s)
		for i := 2; i < len(f); i++ {
			u, _ := strconv.Atoi(f[i])
			f[i] = n.label(u)
		}
		s = strings.Join(f, " ")
	}
	return s
}

// canonStrings rewrites every quoted string of a response's text as Go
// quotes it, the form literals get too: a server may send any string
// quoted or as a literal (RFC 9051 §4.3).
func canonStrings(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '"' {
			b.WriteByte(p[i])
			continue
		}
		var q bytes.Buffer
		j := i + 1
		for ; j < len(p) && p[j] != '"'; j++ {
			if p[j] == '\\' && j+1 < len(p) {
				j++
			}
			q.WriteByte(p[j])
		}
		b.WriteString(strconv.Quote(q.String()))
		i = j
	}
	return b.String()
}

// normalise turns a transcript into lines: "C: command" and the
// normalised responses.
func normalise(tr []exchange) []string {
	n := newNormaliser()
	var out []string
	for _, e := range tr {
		n.command(e.cmd)
		out = append(out, "C: "+e.cmd)
		var lines []string
		for _, r := range e.resp {
			if s := n.response(e.cmd, r); s != "" {
				lines = append(lines, s)
			}
		}
		// A FETCH refused for a part that does not decode: both servers
		// stop at that mail, but not after the same mails (Dovecot goes
		// up the sequence numbers, imapd through the set as written), so
		// only the refusal is compared.
		if n := len(lines); n > 1 && decodeRefusedRe.MatchString(lines[n-1]) {
			tagged := lines[n-1]
			lines = slices.DeleteFunc(slices.Clone(lines[:n-1]), func(l string) bool { return strings.HasPrefix(l, "* ") && strings.Contains(l, " FETCH ") })
			lines = append(lines, tagged)
		}
		// RFC 9051 §6.3.2 sets no order for SELECT's untagged responses
		// (the tagged one is last and stays last).
		if selectRe.MatchString(e.cmd) && len(lines) > 1 {
			slices.Sort(lines[:len(lines)-1])
		}
		out = append(out, lines...)
	}
	return out
}

var decodeRefusedRe = regexp.MustCompile(`^TAG NO \[(PARSE|UNKNOWN-CTE)\]`)

// compareTranscripts returns "" when the normalised transcripts are
// equal, else the differing exchanges (at most 10), each line cut to 300
// bytes.
func compareTranscripts(theirs, ours []exchange) string {
	a, b := normalise(theirs), normalise(ours)
	split := func(lines []string) [][]string {
		var ex [][]string
		for _, l := range lines {
			if strings.HasPrefix(l, "C: ") {
				ex = append(ex, nil)
			}
			ex[len(ex)-1] = append(ex[len(ex)-1], l)
		}
		return ex
	}
	ea, eb := split(a), split(b)
	var d strings.Builder
	shown := 0
	for i := 0; i < max(len(ea), len(eb)) && shown < 10; i++ {
		var x, y []string
		if i < len(ea) {
			x = ea[i]
		}
		if i < len(eb) {
			y = eb[i]
		}
		if strings.Join(x, "\n") == strings.Join(y, "\n") {
			continue
		}
		// Dovecot refuses BINARY of some parts imapd decodes: a FETCH
		// Dovecot ended NO [PARSE] ("Invalid data in MIME part") where
		// imapd answered every mail. Seen for a plain text part of a mail
		// moved about (TWINMX_SEED=1796039017378116379
		// TWINMX_DIFF_MAILS=200 TWINMX_STEPS=1500); why Dovecot refused
		// it is not established. The reverse, imapd refusing what Dovecot
		// decodes, is still a difference.
		if len(x) > 0 && len(y) > 0 && decodeRefusedRe.MatchString(x[len(x)-1]) && strings.HasPrefix(y[len(y)-1], "TAG OK") {
			continue
		}
		shown++
		fmt.Fprintf(&d, "== %s\n", first(x, y))
		for j := 1; j < max(len(x), len(y)); j++ {
			var l, r string
			if j < len(x) {
				l = x[j]
			}
			if j < len(y) {
				r = y[j]
			}
			if l != r {
				// Long FETCH lines differ far in: show them from a little
				// before the first byte that differs.
				at := 0
				for at < min(len(l), len(r)) && l[at] == r[at] {
					at++
				}
				from := max(0, at-120)
				pre := ""
				if from > 0 {
					pre = fmt.Sprintf("(from byte %d) …", from)
				}
				fmt.Fprintf(&d, "  dovecot: %s%s\n  imapd:   %s%s\n", pre, cut(l[min(from, len(l)):], 400), pre, cut(r[min(from, len(r)):], 400))
			}
		}
	}
	return d.String()
}

func first(x, y []string) string {
	if len(x) > 0 {
		return x[0]
	}
	if len(y) > 0 {
		return y[0]
	}
	return ""
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// pickDiffMails takes 24 mails from the corpus: plain text ones,
// multipart ones, and odd ones (RFC 2047 subjects, 8-bit header bytes,
// a message/rfc822 part, no Subject or no Content-Type, base64 parts).
func pickDiffMails(t *testing.T, corpus [][]byte) [][]byte {
	t.Helper()
	want := map[string]int{"plain": 8, "multipart": 6, "encoded": 2, "8bit": 2, "rfc822": 2, "nosubject": 1, "notype": 1, "base64": 2}
	var out [][]byte
	for _, raw := range corpus {
		kind := mailKind(raw)
		if want[kind] > 0 {
			want[kind]--
			out = append(out, raw)
		}
	}
	for k, v := range want {
		if v > 0 {
			t.Logf("corpus has %d fewer %s mails than wanted", v, k)
		}
	}
	if len(out) < 20 {
		t.Fatalf("picked only %d mails", len(out))
	}
	return out
}

func mailKind(raw []byte) string {
	hdr, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	lh := bytes.ToLower(hdr)
	switch {
	case bytes.Contains(bytes.ToLower(body), []byte("content-type: message/rfc822")):
		return "rfc822"
	case !bytes.Contains(lh, []byte("\nsubject:")) && !bytes.HasPrefix(lh, []byte("subject:")):
		return "nosubject"
	case bytes.IndexFunc(hdr, func(r rune) bool { return r >= 0x80 || r == 0xFFFD }) >= 0:
		return "8bit"
	case regexp.MustCompile(`(?i)\nsubject:[^\n]*=\?`).Match(hdr):
		return "encoded"
	case bytes.Contains(lh, []byte("content-transfer-encoding: base64")) || bytes.Contains(bytes.ToLower(body), []byte("content-transfer-encoding: base64")):
		return "base64"
	case bytes.Contains(lh, []byte("content-type: multipart")):
		return "multipart"
	case !bytes.Contains(lh, []byte("content-type:")):
		return "notype"
	}
	return "plain"
}

// searchTerms picks a SUBJECT word and a FROM word that match some but
// not all of the mails.
func searchTerms(t *testing.T, mails [][]byte) (subj, from string) {
	t.Helper()
	subjRe := regexp.MustCompile(`(?m)^Subject: [^\r\n]*?\b([A-Za-z]{6,})\b`)
	fromRe := regexp.MustCompile(`(?m)^From: [^\r\n]*@([a-z0-9-]{4,})\.`)
	for _, raw := range mails[3:] {
		hdr, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		if m := subjRe.FindSubmatch(hdr); m != nil && subj == "" {
			subj = string(m[1])
		}
		if m := fromRe.FindSubmatch(hdr); m != nil && from == "" {
			from = string(m[1])
		}
	}
	if subj == "" || from == "" {
		t.Fatalf("no search terms found (subject %q, from %q)", subj, from)
	}
	return subj, from
}
