package test

import (
	"fmt"
	"regexp"
	"testing"
)

// TestAppendLineEndsDovecot APPENDs, over raw connections to Dovecot and
// imapd, a mail with LF line ends, one with mixed ends and a lone CR,
// and an empty literal, and compares each APPEND's tagged status and the
// stored mail's RFC822.SIZE and BODY[]. imapd stored LF-ended mails as
// sent and served them so (a client's line parser then sees no line
// ends), and took an empty message; Dovecot serves CRLF and refuses it.
func TestAppendLineEndsDovecot(t *testing.T) {
	needDovecot(t)
	dc := startDovecot(t, nil)
	s := newSite(t)
	mails := []string{
		"Subject: lf\nFrom: a@b.example\n\nline1\nline2\n",
		"Subject: mixed\r\nFrom: a@b.example\n\r\nline1\rx\nline2\r\n",
		"Subject: crlf\r\n\r\nbody\r\n",
		"",
	}
	uidRe := regexp.MustCompile(`\[APPENDUID \d+ (\d+)\]`)
	type result struct{ status, fetch string }
	run := func(name, addr, user, pass string) []result {
		do := rawSession(t, name, addr, user, pass, 30e9, nil)
		var out []result
		for i, m := range mails {
			resp := do(fmt.Sprintf("A%d", i), fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(m), m))
			tagged := resp[len(resp)-1].parts[0]
			r := result{status: tagged[len(fmt.Sprintf("A%d ", i)):][:2]}
			if u := uidRe.FindStringSubmatch(tagged); u != nil {
				do("S", "SELECT INBOX")
				for _, f := range do("F", "UID FETCH "+u[1]+" (RFC822.SIZE BODY.PEEK[])") {
					if len(f.lits) == 1 {
						r.fetch = fmt.Sprintf("%s %q", regexp.MustCompile(`RFC822.SIZE \d+`).FindString(f.parts[0]), f.lits[0])
					}
				}
			}
			out = append(out, r)
		}
		return out
	}
	theirs := run("dovecot", dc.addr, dc.user, dc.pass)
	ours := run("imapd", s.imapAddr, login, password)
	for i := range mails {
		if theirs[i] != ours[i] {
			t.Errorf("APPEND %q:\n dovecot: %+v\n imapd:   %+v", mails[i], theirs[i], ours[i])
		}
	}
	if theirs[0].fetch == "" {
		t.Fatalf("no FETCH answer from Dovecot: %+v", theirs)
	}
}
