package session

import (
	"testing"
	"time"
)

// TestSentDay: the SENT* keys read the day as written in the Date field,
// whatever its zone, and a day from Dates net/mail refuses.
func TestSentDay(t *testing.T) {
	for _, c := range []struct{ date, want string }{
		{"Wed, 24 Jul 2002 23:30:00 -0700", "2002-07-24"}, // the 25th in UTC
		{"Thu, 25 Jul 2002 01:30:00 +1000", "2002-07-25"}, // the 24th in UTC
		{"Mon, 16 Sep 2002 03:27:38 (GMT)", "2002-09-16"},
		{"Fri, 23 Aug 2002 19:27:52", "2002-08-23"},
		{"Mon, 27 May 2002 10:28:3 +0200", "2002-05-27"},
		{"Fri, 30 Aug 02 21:48:08 Eastern Daylight Time", "2002-08-30"},
		{"3 Jan 99 10:00 EST", "1999-01-03"},
		{"Tue, 17 Sep 0102 16:06:15 -1100", "0102-09-17"}, // net/mail's reading
		{"2002/09/14 Sat 13:06:03 GMT", "1970-01-01"},     // no day named: as Dovecot
		{"", "1970-01-01"},
	} {
		raw := []byte("Subject: x\r\nDate: " + c.date + "\r\n\r\nbody\r\n")
		if got := sentDay(raw).Format(time.DateOnly); got != c.want {
			t.Errorf("Date %q: day %s, want %s", c.date, got, c.want)
		}
	}
	if got := sentDay([]byte("Subject: no date\r\n\r\n")).Format(time.DateOnly); got != "1970-01-01" {
		t.Errorf("no Date: day %s, want 1970-01-01", got)
	}
	raw := []byte("Date: 1 Feb 2003 00:00 +0000\r\nDate: 5 Mar 2004 00:00 +0000\r\n\r\n")
	if got := sentDay(raw).Format(time.DateOnly); got != "2003-02-01" {
		t.Errorf("two Date fields: day %s, want the first's, 2003-02-01", got)
	}
}

func FuzzLooseDay(f *testing.F) {
	for _, s := range []string{"Fri, 23 Aug 2002 19:27:52", "3 Jan 99", "31-Dec-1999", "0 Jan 2000", "99 Feb 20000", "1 jul 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := looseDay(s)
		if ok && (d.Hour() != 0 || d.Location() != time.UTC) {
			t.Fatalf("%q: %v is not a day", s, d)
		}
	})
}
