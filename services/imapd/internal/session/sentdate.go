package session

import (
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sentDay returns the day of raw's first Date field as written, at 00:00
// UTC: SENTBEFORE, SENTON and SENTSINCE compare it "disregarding time and
// timezone" (RFC 9051 §6.4.4), so `Wed, 24 Jul 2002 23:30 -0700` is on
// 24 July, not on the 25th of UTC. A Date net/mail cannot parse (no zone,
// `(GMT)`, a two-digit year, one-digit seconds) still gives its day when
// it names one (day, month name, year). A mail without a Date, or whose
// Date names no day, was sent on 1 January 1970 for these keys, as for
// Dovecot: RFC 9051 leaves it open, and so each such mail is found by
// SENTBEFORE and by no SENTSINCE after 1970.
func sentDay(raw []byte) time.Time {
	if dates := searchHeader(raw[:headerEnd(raw)], "Date"); len(dates) > 0 {
		v := string(dates[0])
		if t, err := mail.ParseDate(v); err == nil {
			y, m, d := t.Date()
			return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		}
		if d, ok := looseDay(v); ok {
			return d
		}
	}
	return time.Unix(0, 0).UTC()
}

var looseDayRe = regexp.MustCompile(`(?i)(?:^|[^0-9])([0-9]{1,2})[ \t-]+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?[ \t-]+([0-9]{2,4})(?:[^0-9]|$)`)

// looseDay finds a day, a month name and a year in a Date value. Years
// of two or three digits are read as RFC 5322 §4.3 says (obs-year).
func looseDay(v string) (time.Time, bool) {
	m := looseDayRe.FindStringSubmatch(v)
	if m == nil {
		return time.Time{}, false
	}
	d, _ := strconv.Atoi(m[1])
	y, _ := strconv.Atoi(m[3])
	switch {
	case len(m[3]) == 2 && y < 50:
		y += 2000
	case len(m[3]) <= 3:
		y += 1900
	}
	mon := strings.Index("janfebmaraprmayjunjulaugsepoctnovdec", strings.ToLower(m[2])) / 3
	if d < 1 || d > 31 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(mon+1), d, 0, 0, 0, 0, time.UTC), true
}
