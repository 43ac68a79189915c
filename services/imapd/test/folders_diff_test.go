package test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestFolderDifferentialDovecot runs a script of folder commands (CREATE
// of nested names, LIST with * and % at each level and with a reference,
// the delimiter query `LIST "" ""`, INBOX in any case, RENAME of a level
// that is no folder, STATUS, SELECT) against Dovecot (separator "/") and
// imapd, and compares each command's untagged answers as a set and its
// tagged status. imapd's system folders Junk, Sent, Trash and Drafts,
// which this Dovecot does not have, are left out. It found that imapd
// listed no level above a folder `a/b/c` (RFC 3501 §6.3.8 wants `a` and
// `a/b` as \Noselect for `%`), could not RENAME such a level, answered
// nothing to `LIST "" ""`, and matched INBOX in a pattern only in
// capitals. Subscriptions differ by design (imapd's folders start
// subscribed, docs/imapd.md §4) and are not compared, nor is DELETE of a
// folder with inferiors (Dovecot lists it on without \Noselect).
func TestFolderDifferentialDovecot(t *testing.T) {
	script := []string{
		`LIST "" *`,
		`CREATE a/b/c`,
		`LIST "" *`, `LIST "" %`, `LIST "" a/%`, `LIST "a/" %`, `LIST "a/" *`, `LIST "" a/*`, `LIST "" %/%`,
		`CREATE a`, `CREATE a/`, `CREATE "x y"`, `CREATE inbox`, `CREATE INBOX/sub`, `CREATE ""`,
		`LIST "" *`, `LIST "" %`, `LIST "" INBOX/%`, `LIST "" inbox/%`, `LIST "InBoX/" %`,
		`STATUS a/b (MESSAGES)`, `STATUS a/b/c (MESSAGES UNSEEN)`, `STATUS iNbOx (MESSAGES)`,
		`SELECT a/b`, `EXAMINE a/b/c`, `UNSELECT`,
		`RENAME a/b a/z`, `LIST "" *`, `LIST "" a/%`,
		`RENAME a/z q`, `LIST "" *`,
		`RENAME nosuch other`, `RENAME "x y" q/r`, `LIST "" *`, `LIST "" q/%`,
		`DELETE q/z/c`, `DELETE q/z`, `LIST "" *`,
		`DELETE nosuch`, `DELETE INBOX`, `RENAME INBOX Old`,
		`LIST "" ""`, `LIST "a" ""`, `LIST "" iNbOx`, `LIST "" inbox*`, `SELECT iNbOx`,
	}
	theirs, ours := againstDovecot(t, pickDiffMails(t, loadCorpus(t))[:3], script)
	for i, cmd := range script {
		if a, b := folderAnswer(theirs[i]), folderAnswer(ours[i]); a != b {
			t.Errorf("C: %s\n dovecot: %s\n imapd:   %s", cmd, a, b)
		}
	}
}

// againstDovecot runs script over raw connections to Dovecot and to
// imapd, both holding mails, and returns both transcripts.
func againstDovecot(t *testing.T, mails [][]byte, script []string) (theirs, ours []exchange) {
	t.Helper()
	needDovecot(t)
	dc := startDovecot(t, mails)
	s := newSite(t)
	s.deliver(mails)
	return runScript(t, "dovecot", dc.addr, dc.user, dc.pass, script), runScript(t, "imapd", s.imapAddr, login, password, script)
}

var (
	systemFolderRe = regexp.MustCompile(`^\* LIST \([^)]*\) "/" "(Junk|Sent|Trash|Drafts)"$`)
	taggedRe       = regexp.MustCompile(`^T\d+ (OK|NO|BAD)`)
)

// folderAnswer is an exchange as one line: the sorted untagged LIST and
// STATUS answers (names in one quoting, attributes sorted) and the
// tagged status.
func folderAnswer(ex exchange) string {
	var lines []string
	var tagged string
	for _, r := range ex.resp {
		l := canonStrings(strings.TrimRight(r.parts[0], "\r\n"))
		if m := taggedRe.FindStringSubmatch(l); m != nil {
			tagged = m[1] // a response code is optional (RFC 9051 §7.1)
			continue
		}
		if !strings.HasPrefix(l, "* LIST ") && !strings.HasPrefix(l, "* STATUS ") {
			continue // SELECT's answers are compared elsewhere
		}
		l = quoteAtomNames(l)
		// STATUS names the folder as asked (Dovecot) or as listed (imapd):
		// INBOX in any case is INBOX.
		l = strings.Replace(l, `* STATUS "iNbOx"`, `* STATUS "INBOX"`, 1)
		if systemFolderRe.MatchString(l) {
			continue
		}
		if strings.HasPrefix(l, "* LIST (") {
			attrs, rest, _ := strings.Cut(l[len("* LIST ("):], ")")
			f := strings.Fields(attrs)
			slices.Sort(f)
			l = "* LIST (" + strings.Join(f, " ") + ")" + rest
		}
		lines = append(lines, l)
	}
	slices.Sort(lines)
	return strings.Join(lines, " | ") + " || " + tagged
}

var atomNameRe = regexp.MustCompile(`^(\* (?:LIST \([^)]*\) "/"|STATUS)) ([^"( ][^ ]*)`)

// quoteAtomNames writes a mailbox name sent as an atom (Dovecot: INBOX,
// a/b) quoted, as go-imap sends it: both are astrings.
func quoteAtomNames(l string) string {
	return atomNameRe.ReplaceAllStringFunc(l, func(m string) string {
		p := atomNameRe.FindStringSubmatch(m)
		return p[1] + ` "` + p[2] + `"`
	})
}
