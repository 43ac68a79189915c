package session

import (
	"cmp"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"golang.org/x/text/unicode/norm"
)

// sortValue is one message's value for one sort key: a string compared
// by i;unicode-casemap (held mapped, see casemap), or a number (dates in
// Unix ms, sizes).
type sortValue struct {
	s string
	n int64
}

func (a sortValue) compare(b sortValue) int {
	if c := strings.Compare(a.s, b.s); c != 0 {
		return c
	}
	return cmp.Compare(a.n, b.n)
}

// Sort implements imapserver.SessionSort (RFC 5256): the messages that
// match search, ordered by criteria, ties in mailbox order (by sequence
// number, whatever REVERSE says).
func (s *Session) Sort(kind imapserver.NumKind, criteria []imapserver.SortCriterion, search *imap.SearchCriteria) (nums []uint32, err error) {
	defer s.track("sort", &err)()
	if searchKeys(search, maxSearchKeys) > maxSearchKeys {
		return nil, errSearchTooBig
	}
	header := false
	for _, c := range criteria {
		header = header || c.Key != imapserver.SortKeyArrival
	}
	type item struct {
		num    uint32
		seq    uint32
		values []sortValue
	}
	var items []item
	err = s.scan(search, header, func(c *candidate) {
		it := item{num: c.seq, seq: c.seq, values: make([]sortValue, len(criteria))}
		if kind == imapserver.NumKindUID {
			it.num = uint32(c.msg.uid)
		}
		for i, cr := range criteria {
			it.values[i] = c.sortValue(cr.Key)
		}
		items = append(items, it)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(items, func(a, b item) int {
		for i, cr := range criteria {
			c := a.values[i].compare(b.values[i])
			if cr.Reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.seq, b.seq)
	})
	nums = make([]uint32, len(items))
	for i, it := range items {
		nums[i] = it.num
	}
	return nums, nil
}

// sortValue returns the candidate's value for key (RFC 5256 §3).
func (c *candidate) sortValue(key imapserver.SortKey) sortValue {
	switch key {
	case imapserver.SortKeyArrival:
		return sortValue{n: internalDate(c.msg.m.State, c.header).UnixMilli()}
	case imapserver.SortKeySize:
		return sortValue{n: c.size()}
	case imapserver.SortKeyDate:
		// The sent date in UTC; the internal date where the Date field
		// is missing or unreadable (§2.2).
		if d, ok := sortDate(c.header()); ok {
			return sortValue{n: d.UnixMilli()}
		}
		return sortValue{n: internalDate(c.msg.m.State, c.header).UnixMilli()}
	case imapserver.SortKeySubject:
		var subject string
		if v := searchHeader(c.header(), "Subject"); len(v) > 0 {
			subject = string(v[0])
		}
		base, _ := baseSubject(subject)
		return sortValue{s: casemap(base)}
	}
	// FROM, TO, CC: the addr-mailbox (local part) of the field's first
	// address, "" if it has none.
	if c.env == nil {
		c.env = envelope(c.header()) // once for every address key of a SORT
	}
	e := c.env
	var addrs []imap.Address
	switch key {
	case imapserver.SortKeyFrom, imapserver.SortKeyDisplayFrom:
		addrs = e.From
	case imapserver.SortKeyTo, imapserver.SortKeyDisplayTo:
		addrs = e.To
	case imapserver.SortKeyCc:
		addrs = e.Cc
	}
	if key == imapserver.SortKeyDisplayFrom || key == imapserver.SortKeyDisplayTo {
		// RFC 5957: the first address's display name, decoded, else
		// its addr-spec; a group's name; "" for none.
		if len(addrs) == 0 {
			return sortValue{}
		}
		a := addrs[0]
		if a.IsGroupStart() {
			return sortValue{s: casemap(a.Mailbox)}
		}
		// The name as written, white space included (`" Special
		// Deals"`, `" "`), as for Dovecot; encoded words decoded.
		if name := a.Name; name != "" {
			if strings.Contains(name, "=?") {
				name = string(decodedValue([]byte(":" + name)))
			}
			return sortValue{s: casemap(name)}
		}
		return sortValue{s: casemap(a.Addr())}
	}
	// A group's first address is its start, whose addr-mailbox is the
	// group's name ("undisclosed-recipients"), as in the ENVELOPE.
	if len(addrs) > 0 {
		return sortValue{s: casemap(addrs[0].Mailbox)}
	}
	return sortValue{}
}

// casemap is s as i;unicode-casemap (RFC 5051) compares it: every
// character in title case, then canonically decomposed, so that "über",
// "Über" and "Über" with a combining diaeresis sort together. RFC 5256
// names i;ascii-casemap, which orders ASCII the same; Dovecot uses this
// one, and mail clients show subjects in every script. Each run of bytes
// that are not UTF-8 (an undeclared 8-bit header) becomes one U+FFFD, as
// for Dovecot: such text sorts after every script.
func casemap(s string) string {
	if isASCII(s) {
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 'a' + 'A'
			}
		}
		return string(b)
	}
	return norm.NFD.String(strings.Map(unicode.ToTitle, strings.ToValidUTF8(s, "\uFFFD")))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// baseSubject extracts the base subject of a decoded subject (RFC 5256
// §2.1): reply and forward markers, leading [blobs] and a trailing
// "(fwd)" removed, white space collapsed, so that a thread's messages
// sort together. reply reports that a reply or forward marker was
// removed (THREAD=REFERENCES tells replies from the messages they answer
// by it).
func baseSubject(s string) (base string, reply bool) {
	// (1) Tabs and runs of white space become one space (the value is
	// already unfolded and decoded).
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), " ")
	for {
		// (2) Trailing "(fwd)" and white space.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				t, reply = t[:len(t)-5], true
			}
			if t == s {
				break
			}
			s = t
		}
		// (3) and (4), until neither removes anything.
		for {
			t := s
			for {
				u, refwd := trimLeader(t)
				if u == t {
					break
				}
				t, reply = u, reply || refwd
			}
			if rest, ok := cutBlob(t); ok && rest != "" {
				t = rest
			}
			if t == s {
				break
			}
			s = t
		}
		// (6) "[fwd: ... ]" around the whole subject.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s, reply = s[5:len(s)-1], true
			continue
		}
		return s, reply
	}
}

// trimLeader removes one subj-leader: leading white space, or blobs
// followed by "re", "fw" or "fwd", white space, an optional blob and ":"
// (refwd).
func trimLeader(s string) (_ string, refwd bool) {
	if t := strings.TrimLeft(s, " "); t != s {
		return t, false
	}
	t := s
	for {
		rest, ok := cutBlob(t)
		if !ok {
			break
		}
		t = rest
	}
	var n int
	switch {
	case len(t) >= 3 && strings.EqualFold(t[:3], "fwd"):
		n = 3
	case len(t) >= 2 && (strings.EqualFold(t[:2], "re") || strings.EqualFold(t[:2], "fw")):
		n = 2
	default:
		return s, false
	}
	t = strings.TrimLeft(t[n:], " ")
	if rest, ok := cutBlob(t); ok {
		t = rest
	}
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}

// cutBlob removes one subj-blob from the front of s: "[", characters
// other than "[" and "]", "]", then white space.
func cutBlob(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return s, false
	}
	return strings.TrimLeft(s[end+2:], " "), true
}

// sortDate reads the first Date field of header for SORT: the day, month,
// year, time and zone wherever they stand (a missing zone is UTC, a
// missing second 0; minutes and seconds of one digit are no time, as for
// Dovecot), else net/mail's reading.
// A year below 1000 ("Wed, 24 Jul 0102", written by a mailer that forgot
// to add 1900) is no date, as for Dovecot: such a mail sorts by its
// internal date (RFC 5256 §2.2).
func sortDate(header []byte) (time.Time, bool) {
	v := searchHeader(header, "Date")
	if len(v) == 0 {
		return time.Time{}, false
	}
	// The lenient reading first: net/mail reads a zone name it does not
	// know ("EST") as UTC.
	d, ok := looseDate(string(v[0]))
	if !ok {
		var err error
		if d, err = mail.ParseDate(string(v[0])); err != nil {
			return time.Time{}, false
		}
	}
	if d.Year() < 1000 {
		return time.Time{}, false
	}
	return d.UTC(), true
}

var looseDateRe = regexp.MustCompile(`(?i)(?:^|[^0-9])([0-9]{1,2})[ \t-]+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?[ \t-]+([0-9]{2,4})[ \t]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?(?:[ \t]+([+-][0-9]{4}|[a-z]{1,5}))?(?:$|[ \t(])`)

// zoneOffsets are the zone names of RFC 5322 §4.3 (obs-zone), in hours.
var zoneOffsets = map[string]int{"UT": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
	"MST": -7, "MDT": -6, "PST": -8, "PDT": -7}

// looseDate parses a Date value net/mail refuses.
func looseDate(v string) (time.Time, bool) {
	m := looseDateRe.FindStringSubmatch(v)
	if m == nil {
		return time.Time{}, false
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	day, year, hour, minute, sec := num(m[1]), num(m[3]), num(m[4]), num(m[5]), num(m[6])
	if len(m[3]) == 2 {
		year += 1900
		if year < 1950 {
			year += 100
		}
	}
	if day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	mon := strings.Index("janfebmaraprmayjunjulaugsepoctnovdec", strings.ToLower(m[2]))/3 + 1
	offset := 0
	switch z := m[7]; {
	case z == "":
	case z[0] == '+' || z[0] == '-':
		offset = (num(z[1:3])*60 + num(z[3:5])) * 60
		if z[0] == '-' {
			offset = -offset
		}
	default:
		offset = zoneOffsets[strings.ToUpper(z)] * 3600 // unknown names: UTC
	}
	return time.Date(year, time.Month(mon), day, hour, minute, sec, 0, time.FixedZone("", offset)), true
}
