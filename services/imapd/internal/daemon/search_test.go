package daemon

import (
	"fmt"
	"strings"
	"testing"
)

// TestSearchSmallerWithOtherKeys: a SMALLER key keeps its bound when
// another size or date key follows it. go-imap's SearchCriteria.And took
// the other side's SMALLER even when it had none (0), so `SMALLER n
// LARGER m`, `SMALLER n SINCE d` and `(LARGER a SMALLER b) LARGER c`
// searched without the SMALLER bound (found by TestDifferentialDovecotRandom,
// TWINMX_SEED=7: Dovecot found nothing where imapd found every mail
// larger than c).
func TestSearchSmallerWithOtherKeys(t *testing.T) {
	k := start(t)
	for i := 1; i <= 3; i++ { // sizes grow with i
		k.deliver(mail(i) + strings.Repeat("x", 1000*i) + "\r\n")
	}
	r, _ := k.loginSelect()
	sizes := make([]int, 4)
	r.send("f FETCH 1:3 RFC822.SIZE\r\n")
	lines, _ := r.answer("f")
	for _, l := range lines {
		var seq, size int
		if _, err := fmt.Sscanf(l, "* %d FETCH (RFC822.SIZE %d)", &seq, &size); err == nil {
			sizes[seq] = size
		}
	}
	for _, tt := range []struct{ keys, want string }{
		{fmt.Sprintf("SMALLER %d LARGER %d", sizes[3], sizes[1]), "* SEARCH 2"},
		{fmt.Sprintf("LARGER %d SMALLER %d", sizes[1], sizes[3]), "* SEARCH 2"},
		{fmt.Sprintf("SMALLER %d SINCE 1-Jan-2000", sizes[2]), "* SEARCH 1"},
		{fmt.Sprintf("SMALLER %d SENTON 28-Nov-2026", sizes[2]), "* SEARCH 1"},
		{fmt.Sprintf("(LARGER %d SMALLER %d) LARGER %d", sizes[2], sizes[1], sizes[1]), "* SEARCH"},
	} {
		r.send("s SEARCH " + tt.keys + "\r\n")
		lines, tagged := r.answer("s")
		if !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || strings.TrimSpace(lines[0]) != tt.want {
			t.Errorf("SEARCH %s = %q %q, want %q", tt.keys, lines, tagged, tt.want)
		}
	}
}

// SEARCH reads a mail's text as its reader sees it, as Dovecot does: a
// word in a base64 part or an RFC 2047 encoded Subject is found; the
// base64 letters as sent, MIME part headers and the text after a
// multipart's closing boundary (a mailing-list footer) are not. SEARCH
// matched the stored bytes before (found by TestDifferentialDovecotRandom).
func TestSearchDecodedText(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	k.deliver("From: Bob <bob@y.example>\r\nSubject: =?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n" +
		"Message-ID: <enc@y.example>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"aGVsbG8gZGVjb2RlZCB3b3JsZA0K\r\n--b--\r\nlistinfo footer\r\n")
	r, _ := k.loginSelect()
	for _, tt := range []struct{ keys, want string }{
		{`BODY "decoded world"`, "* SEARCH 2"},
		{`TEXT "decoded world"`, "* SEARCH 2"},
		{`SUBJECT "aus"`, "* SEARCH 2"},
		{`TEXT "aus"`, "* SEARCH 2"},
		{`BODY "aGVsbG8"`, "* SEARCH"},
		{`BODY "listinfo"`, "* SEARCH"},
		{`BODY "Content-Transfer"`, "* SEARCH"},
		{`BODY "line two"`, "* SEARCH 1"},
		{`SUBJECT "mail 1"`, "* SEARCH 1"},
		{`HEADER Message-ID "enc@"`, "* SEARCH 2"},
		{`HEADER X-Absent ""`, "* SEARCH"},
		{`OR BODY "decoded" BODY "line two"`, "* SEARCH 1 2"},
	} {
		r.send("s SEARCH " + tt.keys + "\r\n")
		lines, tagged := r.answer("s")
		if !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || strings.TrimSpace(lines[0]) != tt.want {
			t.Errorf("SEARCH %s = %q %q, want %q", tt.keys, lines, tagged, tt.want)
		}
	}
	// A UTF-8 search string (a literal) finds the decoded Subject.
	r.send("s SEARCH CHARSET UTF-8 SUBJECT {5}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal: %q", l)
	}
	r.send("Köln\r\n")
	lines, tagged := r.answer("s")
	if !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || strings.TrimSpace(lines[0]) != "* SEARCH 2" {
		t.Errorf("SEARCH CHARSET UTF-8 SUBJECT Köln = %q %q", lines, tagged)
	}
}

// SENTBEFORE, SENTON and SENTSINCE read the Date field's day as written
// (RFC 9051 §6.4.4: "disregarding time and timezone"), also from a Date
// net/mail refuses. imapd took the day in UTC, and matched no SENT* key
// for such Dates (found by TestDifferentialDovecotRandom over 300 corpus
// mails, TWINMX_DIFF_MAILS).
func TestSearchSentDayAsWritten(t *testing.T) {
	k := start(t)
	for _, d := range []string{"Wed, 24 Jul 2002 23:30:00 -0700", "Fri, 23 Aug 2002 19:27:52", "2002/09/14 Sat 13:06:03 GMT"} {
		k.deliver("From: a@x.example\r\nSubject: s\r\nDate: " + d + "\r\nMessage-ID: <" + strings.ReplaceAll(d, " ", "") + "@x>\r\n\r\nbody\r\n")
	}
	r, _ := k.loginSelect()
	for _, tt := range []struct{ keys, want string }{
		{"SENTON 24-Jul-2002", "* SEARCH 1"},
		{"SENTON 25-Jul-2002", "* SEARCH"},
		{"SENTON 23-Aug-2002", "* SEARCH 2"},
		{"SENTSINCE 1-Aug-2002", "* SEARCH 2"},
		{"SENTBEFORE 1-Jan-1971", "* SEARCH 3"}, // no day named: 1 January 1970
	} {
		r.send("s SEARCH " + tt.keys + "\r\n")
		lines, tagged := r.answer("s")
		if !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || strings.TrimSpace(lines[0]) != tt.want {
			t.Errorf("SEARCH %s = %q %q, want %q", tt.keys, lines, tagged, tt.want)
		}
	}
}

// LIST shows the levels above a nested folder as \Noselect (RFC 3501
// §6.3.8), answers the delimiter query, and matches INBOX in any case;
// RENAME of such a level renames what is under it. Found by
// TestFolderDifferentialDovecot (services/imapd/test).
func TestListHierarchyLevels(t *testing.T) {
	k := start(t)
	r, _ := k.loginSelect()
	r.expectOK([]okStep{
		{`CREATE a/b/c`, ``},
		{`LIST "" %`, `(\Noselect \HasChildren) "/" "a"`},
		{`LIST "a/" %`, `(\Noselect \HasChildren) "/" "a/b"`},
		{`LIST "" ""`, `(\Noselect) "/" ""`},
		{`LIST "" iNbOx`, `"/" INBOX`},
		{`RENAME a/b a/z`, ``},
		{`LIST "" a/z/%`, `(\HasNoChildren) "/" "a/z/c"`},
	})
}

// TestDeletedIsPerFolder: \Deleted marks a mail in one folder only. A
// mail COPYed to Archive whose Archive copy is deleted the "mark, then
// expunge" way keeps its INBOX copy: before 2026-11-30 \Deleted was shared
// by the copies (one receive row), and the next EXPUNGE in INBOX removed
// the INBOX copy too. A COPY of a mail marked \Deleted is marked in the
// target as well (RFC 9051 §6.4.7 keeps flags).
func TestDeletedIsPerFolder(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	k.deliver(mail(2))
	r, _ := k.loginSelect()
	r.expectOK([]okStep{
		{`CREATE Archive`, ``},
		{`COPY 1 Archive`, ``},
		{`SELECT Archive`, `* 1 EXISTS`},
		{`STORE 1 +FLAGS (\Deleted)`, `\Deleted`},
		{`CLOSE`, ``},
		{`SELECT INBOX`, `* 2 EXISTS`},
		{`FETCH 1 FLAGS`, `FLAGS ()`},
		{`SEARCH DELETED`, `* SEARCH` + "\r\n"},
		{`EXPUNGE`, ``},
		{`STATUS Archive (MESSAGES)`, `MESSAGES 0`},
		{`FETCH 1:* FLAGS`, `* 2 FETCH`},
		{`STORE 2 +FLAGS.SILENT (\Deleted)`, ``},
		{`COPY 2 Archive`, ``},
		{`STATUS Archive (MESSAGES DELETED)`, `MESSAGES 1 DELETED 1`},
	})
}

// okStep is a command and a text its untagged answers must hold ("": any).
type okStep struct{ cmd, want string }

// expectOK sends each step's command and checks it is answered OK with
// the step's text among its untagged answers.
func (r *raw) expectOK(steps []okStep) {
	r.t.Helper()
	for _, st := range steps {
		r.send("s " + st.cmd + "\r\n")
		lines, tagged := r.answer("s")
		if !strings.HasPrefix(tagged, "s OK") || !strings.Contains(strings.Join(lines, ""), st.want) {
			r.t.Errorf("%s = %q %q, want OK and an answer with %q", st.cmd, lines, tagged, st.want)
		}
	}
}
