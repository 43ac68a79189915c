package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestSearchRangeKeysDovecot: SEARCH with size and sent-date keys under
// NOT and OR finds what RFC 9051 §6.4.4 says, in mails of 1, 5, 10 and 20
// kB sent on 1 January, March, July and September 2002. Dovecot 2.3.19
// does not when two such keys meet under NOT ("NOT SMALLER 3329 NOT
// SMALLER 9232" gives the mails of 3329 bytes and more), which is why the
// random differential puts at most one size or date key in a SEARCH;
// with Dovecot installed its answers are logged beside imapd's.
func TestSearchRangeKeysDovecot(t *testing.T) {
	var mails [][]byte
	dates := []string{"1 Jan 2002", "1 Mar 2002", "1 Jul 2002", "1 Sep 2002"}
	for i, n := range []int{1000, 5000, 10000, 20000} {
		mails = append(mails, []byte(fmt.Sprintf("From: a@b.example\r\nDate: Mon, %s 10:00:00 +0000\r\nSubject: s%d\r\n\r\n%s\r\n", dates[i], n, strings.Repeat("x", n))))
	}
	cases := []struct{ search, want string }{
		{"NOT OR SMALLER 3329 SMALLER 9232", "* SEARCH 3 4"},
		{"NOT (OR SMALLER 3329 SMALLER 9232)", "* SEARCH 3 4"},
		{"NOT SMALLER 3329 NOT SMALLER 9232", "* SEARCH 3 4"},
		{"OR SMALLER 3329 SMALLER 9232", "* SEARCH 1 2"},
		{"NOT OR LARGER 9000 LARGER 3000", "* SEARCH 1"},
		{"LARGER 3000 SMALLER 9000", "* SEARCH 2"},
		{"NOT OR SENTSINCE 2-Jun-2002 SENTSINCE 7-Feb-2002", "* SEARCH 1"},
		{"NOT SENTSINCE 2-Jun-2002 NOT SENTSINCE 7-Feb-2002", "* SEARCH 1"},
		{"NOT OR SENTBEFORE 2-Jun-2002 SENTBEFORE 7-Feb-2002", "* SEARCH 3 4"},
		{"SENTSINCE 7-Feb-2002 SENTBEFORE 2-Jun-2002", "* SEARCH 2"},
	}
	script := []string{"SELECT INBOX"}
	for _, c := range cases {
		script = append(script, "SEARCH "+c.search)
	}
	s := newSite(t)
	s.deliver(mails)
	ours := runScript(t, "imapd", s.imapAddr, login, password, script)
	var theirs []exchange
	if _, err := exec.LookPath("dovecot"); err == nil {
		dc := startDovecot(t, mails)
		theirs = runScript(t, "dovecot", dc.addr, dc.user, dc.pass, script)
	}
	for i, c := range cases {
		got := strings.Join(ours[i+1].resp[0].parts, "")
		if got != c.want {
			t.Errorf("SEARCH %s: %q, want %q", c.search, got, c.want)
		}
		if theirs != nil {
			if d := strings.Join(theirs[i+1].resp[0].parts, ""); d != c.want {
				t.Logf("Dovecot answers SEARCH %s with %q (want %q)", c.search, d, c.want)
			}
		}
	}
}
