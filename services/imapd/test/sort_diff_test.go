package test

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSortDovecot: SORT by every key but ARRIVAL (the servers' internal
// dates differ: docs/imapd.md §2), reversed and by two keys, over corpus
// mails, answers as Dovecot does. TWINMX_SORT_MAILS sets how many mails
// (default 400, every tenth of the corpus).
func TestSortDovecot(t *testing.T) {
	needDovecot(t)
	corpus := loadCorpus(t)
	n := 400
	if v, err := strconv.Atoi(os.Getenv("TWINMX_SORT_MAILS")); err == nil && v > 0 {
		n = v
	}
	var mails [][]byte
	for i := 0; i < len(corpus) && len(mails) < n; i += max(1, len(corpus)/n) {
		// A mail without a readable date sorts by its internal date
		// under DATE, and the servers' internal dates differ.
		if !undatedRe.Match(corpus[i]) && !emptyNameRe.Match(corpus[i]) {
			mails = append(mails, corpus[i])
		}
	}
	script := []string{"SELECT INBOX", "UID SEARCH ALL"}
	// Not REVERSE DATE: mails without a readable date sort by internal
	// date, which is the arrival here and the same second at Dovecot, so
	// in reverse their order would differ.
	sorts := []string{"SUBJECT", "FROM", "TO", "CC", "DATE", "SIZE", "REVERSE SUBJECT", "REVERSE SIZE",
		"FROM DATE", "REVERSE FROM SUBJECT", "CC REVERSE SIZE", "SUBJECT TO", "DISPLAYFROM", "REVERSE DISPLAYTO SIZE"}
	for _, k := range sorts {
		script = append(script, "SORT ("+k+") UTF-8 ALL")
	}
	script = append(script, "UID SORT (SUBJECT) UTF-8 LARGER 3000", "SORT (DATE) UTF-8 NOT SMALLER 2000",
		"SORT RETURN (MIN MAX COUNT ALL) (FROM SIZE) UTF-8 ALL", "SORT RETURN (COUNT MIN) (REVERSE SIZE) UTF-8 LARGER 5000",
		"THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 LARGER 3000")
	dc := startDovecot(t, mails)
	s := newSite(t)
	s.deliver(mails)
	theirs := runScript(t, "dovecot", dc.addr, dc.user, dc.pass, script)
	ours := runScript(t, "imapd", s.imapAddr, login, password, script)
	for i := 2; i < len(script); i++ {
		if strings.HasPrefix(script[i], "THREAD ") || strings.HasPrefix(script[i], "SORT RETURN") {
			d, o := threadAnswer(theirs[i]), threadAnswer(ours[i])
			if strings.HasPrefix(script[i], "SORT RETURN") {
				d, o = esearchItems(d), esearchItems(o)
			}
			if len(d) < len("* THREAD (1)") {
				t.Errorf("%s: Dovecot answered %q", script[i], d)
			}
			if d != o {
				at := 0
				for at < len(d) && at < len(o) && d[at] == o[at] {
					at++
				}
				from := max(0, at-80)
				t.Errorf("%s: answers differ from byte %d:\n  Dovecot: …%s\n  imapd:   …%s", script[i], at, d[from:min(len(d), at+80)], o[from:min(len(o), at+80)])
			}
			continue
		}
		d, o := sortNums(theirs[i]), sortNums(ours[i])
		if strings.HasPrefix(script[i], "UID ") {
			// UIDs differ between the servers; compare the sequence
			// numbers they stand for.
			d, o = seqOf(t, theirs[1], d), seqOf(t, ours[1], o)
		}
		if len(d) != len(o) {
			t.Errorf("%s: %d numbers from Dovecot, %d from imapd", script[i], len(d), len(o))
			continue
		}
		for j := range d {
			if d[j] != o[j] {
				t.Errorf("%s: position %d: Dovecot has mail %s, imapd %s\n  Dovecot's: %s\n  imapd's:   %s", script[i], j, d[j], o[j],
					sortMailText(mails, d[j]), sortMailText(mails, o[j]))
				break
			}
		}
	}
}

// undatedRe finds a Date field with a year below 1000 ("0102").
var undatedRe = regexp.MustCompile(`(?im)^Date:[^\r\n]*[a-z]{3}[ \t]+0[0-9]{3}[ \t]`)

// threadAnswer returns an exchange's * THREAD (or * ESEARCH) response.
func threadAnswer(e exchange) string {
	for _, r := range e.resp {
		line := strings.TrimSpace(strings.Join(r.parts, ""))
		if strings.HasPrefix(line, "* THREAD") || strings.HasPrefix(line, "* ESEARCH") {
			return line
		}
	}
	return ""
}

// emptyNameRe finds a From or To whose display name starts with an empty
// quoted string (`"" Angles " Puglisi" <a@b>`): Dovecot 2.3.19 reads the
// name as "" (its ENVELOPE too), imapd as `Angles  Puglisi`, so
// DISPLAYFROM and DISPLAYTO would differ for a reason of their own.
var emptyNameRe = regexp.MustCompile(`(?im)^(From|To):[ \t]*""`)

// esearchItems puts an ESEARCH response's return data items in one order
// (RFC 4731 §3.1 leaves it to the server: Dovecot sends COUNT last).
func esearchItems(line string) string {
	head, rest, _ := strings.Cut(line, ")")
	f := strings.Fields(rest)
	var items []string
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == "UID" {
			head += " UID"
			i--
			continue
		}
		items = append(items, f[i]+" "+f[i+1])
	}
	slices.Sort(items)
	return head + ") " + strings.Join(items, " ")
}

// sortNums returns the numbers of an exchange's * SORT response.
func sortNums(e exchange) []string {
	for _, r := range e.resp {
		line := strings.TrimSpace(strings.Join(r.parts, ""))
		if rest, ok := strings.CutPrefix(line, "* SORT"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// seqOf maps UIDs to sequence numbers by the UID SEARCH ALL in all.
func seqOf(t *testing.T, all exchange, uids []string) []string {
	t.Helper()
	seq := map[string]string{}
	for _, r := range all.resp {
		line := strings.TrimSpace(strings.Join(r.parts, ""))
		if rest, ok := strings.CutPrefix(line, "* SEARCH"); ok {
			for i, u := range strings.Fields(rest) {
				seq[u] = strconv.Itoa(i + 1)
			}
		}
	}
	out := make([]string, len(uids))
	for i, u := range uids {
		if out[i] = seq[u]; out[i] == "" {
			t.Fatalf("UID %s not in UID SEARCH ALL", u)
		}
	}
	return out
}

// sortMailText shows the sort-relevant header fields of mail seq (1-based).
func sortMailText(mails [][]byte, seq string) string {
	n, err := strconv.Atoi(seq)
	if err != nil || n < 1 || n > len(mails) {
		return "?"
	}
	raw := string(mails[n-1])
	hdr, _, _ := strings.Cut(strings.ReplaceAll(raw, "\r\n", "\n"), "\n\n")
	var out []string
	for _, l := range strings.Split(hdr, "\n") {
		ll := strings.ToLower(l)
		for _, f := range []string{"subject:", "from:", "to:", "cc:", "date:"} {
			if strings.HasPrefix(ll, f) {
				out = append(out, l)
			}
		}
	}
	return strconv.Quote(strings.Join(out, " | ")) + " size " + strconv.Itoa(len(raw))
}
