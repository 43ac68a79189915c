package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestSearchCharsetDovecot: SEARCH CHARSET with a charset other than
// UTF-8 (the strings in ISO-8859-1 or KOI8-R, as literals) finds what
// Dovecot finds, and an unknown charset gets NO [BADCHARSET] from both;
// imapd refused every charset but US-ASCII and UTF-8, and did so before
// reading the rest of the command, so that a literal in it was then read
// as a command of its own.
func TestSearchCharsetDovecot(t *testing.T) {
	mails := [][]byte{
		[]byte("From: a@x.example\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSch\xf6ne Gr\xfc\xdfe\r\n"),
		[]byte("From: b@x.example\r\nSubject: =?koi8-r?b?8NLJ18XU?=\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n\r\n\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80\r\n"),
		[]byte("From: c@x.example\r\nSubject: plain\r\n\r\nnothing special\r\n"),
	}
	lit := func(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }
	script := []string{
		"SELECT INBOX",
		"SEARCH CHARSET ISO-8859-1 SUBJECT " + lit("gr\xfc\xdfe"),
		"SEARCH CHARSET ISO-8859-1 BODY " + lit("sch\xf6ne"),
		"SEARCH CHARSET ISO-8859-1 TEXT " + lit("K\xf6ln"),
		"SEARCH CHARSET ISO-8859-1 NOT SUBJECT " + lit("gr\xfc\xdfe"),
		"SEARCH CHARSET KOI8-R SUBJECT " + lit("\xf0\xd2\xc9\xd7\xc5\xd4"),
		"SEARCH CHARSET KOI8-R OR BODY " + lit("\xcd\xc9\xd2") + " FROM c",
		"SEARCH CHARSET UTF-8 SUBJECT " + lit("Köln"),
		"SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT x",
		// The refusal must not leave the literal to be read as a command.
		"SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT " + lit("NOOP"),
		"SEARCH CHARSET ISO-8859-1 SUBJECT plain",
	}
	theirs, ours := againstDovecot(t, mails, script)
	for i, cmd := range script {
		a, b := searchAnswer(theirs[i]), searchAnswer(ours[i])
		if a != b {
			t.Errorf("C: %q\n dovecot: %s\n imapd:   %s", cmd, a, b)
		}
	}
}

// searchAnswer is a SEARCH exchange as "numbers sorted; status [code]".
func searchAnswer(ex exchange) string {
	var nums []string
	for _, r := range ex.resp {
		l := strings.TrimRight(r.parts[0], "\r\n")
		if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
			nums = append(nums, strings.Fields(rest)...)
		}
	}
	slices.Sort(nums)
	status := taggedStatus(ex)
	for _, r := range ex.resp {
		if strings.Contains(r.parts[0], "[BADCHARSET") {
			status += " [BADCHARSET]"
		}
	}
	return strings.Join(nums, " ") + "; " + status
}
