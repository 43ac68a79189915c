package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// sortMail is a mail for TestSort, its body padded to about size bytes.
func sortMail(hdr string, size int) string {
	return hdr + "\r\n" + strings.Repeat("x", size) + "\r\n"
}

// TestSort: SORT and UID SORT (RFC 5256) by every key, reversed, by two
// keys, with search criteria; ties in mailbox order.
func TestSort(t *testing.T) {
	k := start(t)
	mails := []string{
		sortMail("From: zed@a.example\r\nTo: bob@b.example\r\nCc: carl@c.example\r\nSubject: Re: beta\r\nDate: Tue, 3 Nov 2026 00:00:00 +0000\r\n", 100),
		sortMail("From: Adam <adam@a.example>\r\nTo: zoe@b.example\r\nSubject: alpha\r\nDate: Sun, 1 Nov 2026 12:00:00 +0000\r\n", 4000),
		// No Date: sorted by its internal date (now) under DATE.
		sortMail("From: mike@a.example\r\nTo: =?utf-8?q?M=C3=A4ry?= <Mary@b.example>\r\nSubject: =?utf-8?q?Fwd=3A_gamma?=\r\n", 1000),
		// Later than mail 1 in UTC, though its day is earlier.
		sortMail("To: adam@b.example\r\nCc: Zed <ZED@c.example>\r\nSubject: [list] Alpha\r\nDate: Mon, 2 Nov 2026 23:30:00 -0700\r\n", 2000),
	}
	for _, m := range mails {
		k.deliver(m)
		time.Sleep(3 * time.Millisecond) // distinct arrival times
	}
	c := k.loggedIn(nil)
	if !c.Caps().Has(imap.CapSort) || !c.Caps().Has(imap.CapSortDisplay) {
		t.Fatal("SORT or SORT=DISPLAY not advertised")
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 4 {
		t.Fatalf("select: %v, %v", sd, err)
	}
	key := func(s string) imapclient.SortCriterion {
		rev := strings.HasPrefix(s, "-")
		return imapclient.SortCriterion{Key: imapclient.SortKey(strings.TrimPrefix(s, "-")), Reverse: rev}
	}
	all := &imap.SearchCriteria{}
	for _, tc := range []struct {
		keys   []string
		search *imap.SearchCriteria
		want   []uint32
	}{
		{[]string{"SUBJECT"}, all, []uint32{2, 4, 1, 3}}, // alpha = [list] Alpha (ties in order), beta, gamma
		{[]string{"-SUBJECT"}, all, []uint32{3, 1, 2, 4}},
		{[]string{"DATE"}, all, []uint32{2, 1, 4, 3}},
		{[]string{"FROM"}, all, []uint32{4, 2, 3, 1}}, // no From first
		{[]string{"TO"}, all, []uint32{4, 1, 3, 2}},   // MARY between BOB and ZOE
		{[]string{"CC"}, all, []uint32{2, 3, 1, 4}},
		{[]string{"SIZE"}, all, []uint32{1, 3, 4, 2}},
		{[]string{"ARRIVAL"}, all, []uint32{1, 2, 3, 4}},
		{[]string{"-ARRIVAL"}, all, []uint32{4, 3, 2, 1}},
		{[]string{"SUBJECT", "-DATE"}, all, []uint32{4, 2, 1, 3}},
		// Display names where there are, else addresses: "", Adam,
		// mike@a.example, zed@a.example; To: adam@b.example, bob@b.example,
		// Märy (decoded), zoe@b.example.
		{[]string{"DISPLAYFROM"}, all, []uint32{4, 2, 3, 1}},
		{[]string{"DISPLAYTO"}, all, []uint32{4, 1, 3, 2}},
		{[]string{"SUBJECT"}, &imap.SearchCriteria{Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "zed"}}}}}, []uint32{2, 4, 3}},
		{[]string{"SIZE"}, &imap.SearchCriteria{Larger: 1500}, []uint32{4, 2}},
	} {
		name := fmt.Sprintf("SORT %v %v", tc.keys, tc.search)
		var crit []imapclient.SortCriterion
		for _, s := range tc.keys {
			crit = append(crit, key(s))
		}
		got, err := c.Sort(&imapclient.SortOptions{SearchCriteria: tc.search, SortCriteria: crit}).Wait()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", name, got, tc.want)
		}
	}
	// UID SORT answers UIDs in the same order.
	fd, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	uids, err := c.UIDSort(&imapclient.SortOptions{SearchCriteria: all, SortCriteria: []imapclient.SortCriterion{key("SUBJECT")}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{uint32(fd[1].UID), uint32(fd[3].UID), uint32(fd[0].UID), uint32(fd[2].UID)}
	if !slices.Equal(uids, want) {
		t.Errorf("UID SORT (SUBJECT) = %v, want %v", uids, want)
	}
}

// TestSortRefusals: bad SORT commands get BAD or NO, and the session goes
// on.
func TestSortRefusals(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	r := k.rawLogin()
	r.send("a2 SORT (SUBJECT) UTF-8 ALL\r\n")
	if s := r.until("a2 "); !strings.HasPrefix(s, "a2 BAD") && !strings.HasPrefix(s, "a2 NO") {
		t.Errorf("SORT before SELECT: %q", s)
	}
	r.send("a3 SELECT INBOX\r\n")
	if s := r.until("a3 "); !strings.HasPrefix(s, "a3 OK") {
		t.Fatalf("select: %q", s)
	}
	for _, c := range []struct{ cmd, want string }{
		{"SORT (COLOR) UTF-8 ALL", "BAD"},
		{"SORT () UTF-8 ALL", "BAD"},
		{"SORT (SUBJECT) UTF-8", "BAD"},
		{"SORT SUBJECT UTF-8 ALL", "BAD"},
		{"SORT (REVERSE) UTF-8 ALL", "BAD"},
		{"SORT (SUBJECT) X-NO-SUCH-CHARSET ALL", "NO [BADCHARSET]"},
		{"SORT (reverse subject) utf-8 all", "OK"},
	} {
		r.send("a4 " + c.cmd + "\r\n")
		if s := r.until("a4 "); !strings.HasPrefix(s, "a4 "+c.want) {
			t.Errorf("%s: %q, want %s", c.cmd, s, c.want)
		}
	}
	// ESORT (RFC 5267): SORT RETURN answers ESEARCH, MIN and MAX the
	// first and last in sort order, ALL in sort order.
	for _, c := range []struct{ cmd, want string }{
		{"SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL", `* ESEARCH (TAG "a6") MIN 1 MAX 1 COUNT 1 ALL 1`},
		{"SORT RETURN () (SUBJECT) UTF-8 ALL", `* ESEARCH (TAG "a6") ALL 1`},
		{"SORT RETURN (COUNT) (SUBJECT) UTF-8 SUBJECT nothing-matches", `* ESEARCH (TAG "a6") COUNT 0`},
	} {
		r.send("a6 " + c.cmd + "\r\n")
		if s := r.line(); s != c.want+"\r\n" {
			t.Errorf("%s: %q, want %q", c.cmd, s, c.want)
		}
		if s := r.until("a6 "); !strings.HasPrefix(s, "a6 OK") {
			t.Errorf("%s: %q", c.cmd, s)
		}
	}
	for _, cmd := range []string{"SORT RETURN (SAVE) (SUBJECT) UTF-8 ALL", "SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL", "SORT BOGUS (SUBJECT) UTF-8 ALL"} {
		r.send("a7 " + cmd + "\r\n")
		if s := r.until("a7 "); !strings.HasPrefix(s, "a7 BAD") {
			t.Errorf("%s: %q, want BAD", cmd, s)
		}
	}
	r.send("a5 SORT (SIZE) UTF-8 ALL\r\n")
	if s := r.line(); s != "* SORT 1\r\n" {
		t.Errorf("SORT answer %q", s)
	}
	if s := r.until("a5 "); !strings.HasPrefix(s, "a5 OK") {
		t.Errorf("SORT after the refusals: %q", s)
	}
}

// TestThread: THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256) are
// advertised and answer through go-imap's client; UID THREAD answers UIDs.
func TestThread(t *testing.T) {
	k := start(t)
	mails := []string{
		"From: a@x.example\r\nSubject: plan\r\nMessage-ID: <1@x>\r\nDate: Sun, 1 Nov 2026 10:00:00 +0000\r\n\r\nx\r\n",
		"From: b@x.example\r\nSubject: other\r\nMessage-ID: <2@x>\r\nDate: Sun, 1 Nov 2026 11:00:00 +0000\r\n\r\nx\r\n",
		"From: c@x.example\r\nSubject: Re: plan\r\nMessage-ID: <3@x>\r\nIn-Reply-To: <1@x>\r\nDate: Sun, 1 Nov 2026 12:00:00 +0000\r\n\r\nx\r\n",
		"From: d@x.example\r\nSubject: Re: plan\r\nMessage-ID: <4@x>\r\nReferences: <1@x> <3@x>\r\nDate: Sun, 1 Nov 2026 13:00:00 +0000\r\n\r\nx\r\n",
		"From: e@x.example\r\nSubject: Re: plan\r\nMessage-ID: <5@x>\r\nReferences: <1@x>\r\nDate: Sun, 1 Nov 2026 14:00:00 +0000\r\n\r\nx\r\n",
	}
	for _, m := range mails {
		k.deliver(m)
	}
	c := k.loggedIn(nil)
	for _, cp := range []imap.Cap{"THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"} {
		if !c.Caps().Has(cp) {
			t.Errorf("%s not advertised", cp)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	render := func(ts []imapclient.ThreadData) string {
		var b strings.Builder
		var one func(d imapclient.ThreadData)
		one = func(d imapclient.ThreadData) {
			b.WriteString("(")
			for i, n := range d.Chain {
				if i > 0 {
					b.WriteString(" ")
				}
				fmt.Fprint(&b, n)
			}
			if len(d.Chain) > 0 && len(d.SubThreads) > 0 {
				b.WriteString(" ")
			}
			for _, s := range d.SubThreads {
				one(s)
			}
			b.WriteString(")")
		}
		for _, d := range ts {
			one(d)
		}
		return b.String()
	}
	all := &imap.SearchCriteria{}
	for _, tc := range []struct {
		alg  imap.ThreadAlgorithm
		want string
	}{
		{imap.ThreadReferences, "(1 (3 4)(5))(2)"},
		{imap.ThreadOrderedSubject, "(1 (3)(4)(5))(2)"},
	} {
		got, err := c.Thread(&imapclient.ThreadOptions{Algorithm: tc.alg, SearchCriteria: all}).Wait()
		if err != nil {
			t.Errorf("THREAD %s: %v", tc.alg, err)
			continue
		}
		if s := render(got); s != tc.want {
			t.Errorf("THREAD %s = %s, want %s", tc.alg, s, tc.want)
		}
	}
	fd, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4, 5), &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.UIDThread(&imapclient.ThreadOptions{Algorithm: imap.ThreadReferences, SearchCriteria: &imap.SearchCriteria{
		Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "b@"}}}}}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("(%d (%d %d)(%d))", fd[0].UID, fd[2].UID, fd[3].UID, fd[4].UID)
	if s := render(got); s != want {
		t.Errorf("UID THREAD REFERENCES without b@ = %s, want %s", s, want)
	}
	r, _ := k.loginSelect()
	r.send("a3 THREAD COLOURS UTF-8 ALL\r\n")
	if s := r.until("a3 "); !strings.HasPrefix(s, "a3 BAD") {
		t.Errorf("THREAD with an unknown algorithm: %q", s)
	}
	r.send("a4 THREAD REFERENCES UTF-8 SUBJECT nothing-matches\r\n")
	if s := r.line(); s != "* THREAD\r\n" {
		t.Errorf("THREAD of no mail: %q", s)
	}
	if s := r.until("a4 "); !strings.HasPrefix(s, "a4 OK") {
		t.Errorf("THREAD of no mail: %q", s)
	}
}
