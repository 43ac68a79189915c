package test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestEnvelopeDovecot compares every corpus mail's ENVELOPE and
// BODYSTRUCTURE with Dovecot's. The address lists must be equal but for
// raw 8-bit display names (dovecotAddrs); Date, Subject, In-Reply-To and
// Message-ID are the header's text, compared as they are. Before imapd
// read address lists itself, 130 lists differed, most of them NIL where
// Dovecot showed the sender; before it sent the header's text, 87 Dates
// and 57 Message-IDs were NIL (unparsable for go-imap), an empty Subject
// was NIL and In-Reply-To lost all but its msg-ids (docs/imapd.md
// "Compared with Dovecot"). It also checks the lists' form: no space
// between addresses (RFC 9051 §9, env-from).
func TestEnvelopeDovecot(t *testing.T) {
	needDovecot(t)
	mails := loadCorpus(t)
	dc := startDovecot(t, mails)
	s := newSite(t)
	s.deliver(mails)

	theirs, _ := fetchItems(t, "dovecot", dc.addr, dc.user, dc.pass)
	ours, raw := fetchItems(t, "imapd", s.imapAddr, login, password)
	spaced := regexp.MustCompile(`(S|NIL)\) \((S|NIL)`)
	for _, line := range raw {
		if spaced.MatchString(line) {
			t.Errorf("address list with a space between addresses: %s", cut(line, 300))
			break
		}
	}
	names := []string{"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID"}
	diffs := 0
	differ := func(n int, what, field, x, y string) {
		if diffs++; diffs <= 10 {
			t.Errorf("mail %d %s (header %q):\n dovecot %s\n imapd   %s", n, what,
				cut(headerFields(mails[n-1], field), 200), cut(x, 300), cut(y, 300))
		}
	}
	for n := 1; n <= len(mails); n++ {
		a, b := theirs[n], ours[n]
		if len(a) != 4 || len(b) != 4 {
			t.Fatalf("mail %d: want BODYSTRUCTURE and ENVELOPE (dovecot %v, imapd %v)", n, a, b)
		}
		ea, eb := a[3], b[3]
		if len(ea.list) != 10 || len(eb.list) != 10 {
			t.Fatalf("mail %d: no ENVELOPE (dovecot %v, imapd %v)", n, ea, eb)
		}
		for i, name := range names {
			if x, y := ea.list[i].String(), eb.list[i].String(); x != y {
				differ(n, name, name, x, y)
			}
		}
		ba, bb := a[1], b[1]
		if headerFields(mails[n-1], "MIME-Version") == "" && len(ba.list) > 5 && len(bb.list) > 5 {
			// Without MIME-Version, Dovecot ignores Content-Transfer-
			// Encoding (`8bit` shows as 7bit); imapd reads it (3 mails).
			ba.list[5], bb.list[5] = nilSexp, nilSexp
		}
		if x, y := ba.String(), bb.String(); x != y {
			differ(n, "BODYSTRUCTURE", "Content-Type", x, y)
		}
	}
	if diffs > 0 {
		t.Errorf("%d fields of %d mails differ", diffs, len(mails))
	}
}

// fetchItems runs FETCH 1:* (ENVELOPE BODYSTRUCTURE) and returns each
// mail's items by sequence number, normalised (normFetch: BODYSTRUCTURE,
// ENVELOPE in that order), and the ENVELOPEs as sent, strings as S.
func fetchItems(t *testing.T, name, addr, user, pass string) (map[int][]sexp, []string) {
	t.Helper()
	do := rawSession(t, name, addr, user, pass, 60*time.Second, nil)
	do("S", "EXAMINE INBOX")
	out := map[int][]sexp{}
	var raw []string
	fetch := regexp.MustCompile(`^\* (\d+) FETCH (.*)$`)
	quoted := regexp.MustCompile(`"(\\.|[^"\\])*"`)
	for _, r := range do("F", "FETCH 1:* (ENVELOPE BODYSTRUCTURE)") {
		var b strings.Builder
		for i, p := range r.parts {
			b.WriteString(canonStrings(p))
			if i < len(r.lits) {
				b.WriteString(strconv.Quote(string(r.lits[i])))
			}
		}
		m := fetch.FindStringSubmatch(b.String())
		if m == nil {
			continue
		}
		if env, ok := sexpAfter(quoted.ReplaceAllString(b.String(), "S"), "ENVELOPE "); ok {
			raw = append(raw, env)
		}
		n, _ := strconv.Atoi(m[1])
		items, _ := parseSexp(m[2])
		out[n] = newNormaliser().normFetch(items).list
	}
	return out, raw
}

// dovecotAddrs normalises an address list for comparison: display names
// RFC 2047-decoded and squeezed (envText), and raw 8-bit names that are
// not UTF-8 read as Latin-1, as imapd sends them (Dovecot sends the
// bytes; docs/imapd.md). Group markers are kept.
func dovecotAddrs(v sexp) sexp {
	if !v.isL {
		return v
	}
	out := sexp{isL: true}
	for _, a := range v.list {
		b := sexp{isL: true, list: append([]sexp(nil), a.list...)}
		if len(b.list) == 4 && b.list[0].str != nil {
			name := *b.list[0].str
			if !utf8.ValidString(name) {
				r := make([]rune, len(name))
				for i := range len(name) {
					r[i] = rune(name[i])
				}
				name = string(r)
			}
			b.list[0] = envText(strSexp(name))
			if *b.list[0].str == "" {
				b.list[0] = nilSexp
			}
		}
		out.list = append(out.list, b)
	}
	return out
}

// headerFields returns the fields named k of a mail's header, joined.
func headerFields(raw []byte, k string) string {
	hdr, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	return strings.Join(regexp.MustCompile(`(?im)^`+k+`:.*(\r\n[ \t].*)*`).FindAllString(string(hdr), -1), " | ")
}

// sexpAfter returns the parenthesised list after the first key in s.
func sexpAfter(s, key string) (string, bool) {
	i := strings.Index(s, key)
	if i < 0 || !strings.HasPrefix(s[i+len(key):], "(") {
		return "", false
	}
	s = s[i+len(key):]
	depth := 0
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return s[:j+1], true
			}
		}
	}
	return "", false
}
