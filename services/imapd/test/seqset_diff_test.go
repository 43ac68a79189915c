package test

import (
	"testing"
)

// TestSeqNumbersDovecot compares, with Dovecot, the tagged status of
// FETCH, STORE, COPY, MOVE and SEARCH over sequence sets that name
// messages the client was not told of (above the count, "*" in an empty
// folder) and UID sets that name none. imapd answered OK and did nothing
// where RFC 9051 §9 (seq-number) says a server should answer BAD, as
// Dovecot does; SEARCH and every UID form stay OK.
func TestSeqNumbersDovecot(t *testing.T) {
	script := []string{
		`CREATE e`, `SELECT e`,
		`FETCH 1:* FLAGS`, `FETCH * FLAGS`, `STORE 1:* +FLAGS (\Seen)`, `COPY 1:* INBOX`, `MOVE * INBOX`,
		`SEARCH 1:*`, `SEARCH 5`, `UID FETCH 1:* FLAGS`, `UID STORE 1:* +FLAGS (\Seen)`, `UID COPY 1:* INBOX`,
		`SELECT INBOX`,
		`FETCH 1:3 FLAGS`, `FETCH 3:* FLAGS`, `FETCH 2:4 FLAGS`, `FETCH 4:* FLAGS`, `FETCH 3,9 FLAGS`,
		`STORE 4 +FLAGS (\Seen)`, `COPY 3:5 e`, `MOVE 9 e`,
		`SEARCH 1:9`, `SEARCH 9`, `SEARCH NOT 1:9`, `UID FETCH 99999 FLAGS`, `UID SEARCH 1:99999`,
	}
	theirs, ours := againstDovecot(t, pickDiffMails(t, loadCorpus(t))[:3], script)
	for i, cmd := range script {
		if a, b := taggedStatus(theirs[i]), taggedStatus(ours[i]); a != b {
			t.Errorf("C: %s\n dovecot: %s\n imapd:   %s", cmd, a, b)
		}
	}
}

// taggedStatus is an exchange's tagged status: OK, NO or BAD.
func taggedStatus(ex exchange) string {
	for _, r := range ex.resp {
		if m := taggedRe.FindStringSubmatch(r.parts[0]); m != nil {
			return m[1]
		}
	}
	return "(none)"
}
