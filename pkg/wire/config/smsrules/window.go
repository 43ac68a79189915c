package smsrules

import (
	"fmt"
	"strings"
	"time"
)

// Window is a weekly time-of-day window in the mailbox's local time:
// on each of Days, from Start to End minutes after local midnight. When End
// is not after Start the window crosses midnight: it starts on a listed day
// and ends on the next day ("fri 22:00-02:00" holds Saturday 01:00).
// Local wall-clock time is used, so a window keeps its hours across
// daylight saving changes.
type Window struct {
	Days       [7]bool // indexed by time.Weekday
	Start, End int     // minutes, 0..1440
}

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindow reads "DAYS HH:MM-HH:MM". DAYS is "*" (every day), or a
// comma list of days and day ranges: "mon-fri", "sat,sun", "fri-mon".
// End may be "24:00".
func ParseWindow(s string) (Window, error) {
	var w Window
	days, hours, ok := strings.Cut(strings.TrimSpace(strings.ToLower(s)), " ")
	if !ok {
		return w, fmt.Errorf("%w: window %q: want \"DAYS HH:MM-HH:MM\"", ErrSyntax, cut(s))
	}
	if err := w.parseDays(days); err != nil {
		return w, err
	}
	from, to, ok := strings.Cut(strings.TrimSpace(hours), "-")
	if !ok {
		return w, fmt.Errorf("%w: window %q: want HH:MM-HH:MM", ErrSyntax, cut(s))
	}
	var err error
	if w.Start, err = clock(from, false); err != nil {
		return w, err
	}
	if w.End, err = clock(to, true); err != nil {
		return w, err
	}
	if w.Start == w.End {
		return w, fmt.Errorf("%w: window %q is empty (use 00:00-24:00 for all day)", ErrSyntax, cut(s))
	}
	return w, nil
}

func (w *Window) parseDays(s string) error {
	if s == "*" {
		w.Days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		da, err := day(a)
		if err != nil {
			return err
		}
		db := da
		if isRange {
			if db, err = day(b); err != nil {
				return err
			}
		}
		for d := da; ; d = (d + 1) % 7 {
			w.Days[d] = true
			if d == db {
				break
			}
		}
	}
	return nil
}

func day(s string) (int, error) {
	for i, n := range dayNames {
		if s == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: day %q (want sun, mon, tue, wed, thu, fri or sat)", ErrSyntax, cut(s))
}

// clock reads "HH:MM", exactly two digits each (fmt.Sscanf would also
// take a sign or a space, so "-1:00" was minute -60). Only an end may be
// 24:00.
func clock(s string, end bool) (int, error) {
	if len(s) != 5 || s[2] != ':' || !digits(s[:2]) || !digits(s[3:]) {
		return 0, fmt.Errorf("%w: time %q: want HH:MM", ErrSyntax, cut(s))
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("%w: time %q", ErrSyntax, s)
	}
	return h*60 + m, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the window in the form ParseWindow reads (days as a
// comma list).
func (w Window) String() string {
	var days []string
	all := true
	for d, on := range w.Days {
		if on {
			days = append(days, dayNames[d])
		} else {
			all = false
		}
	}
	ds := strings.Join(days, ",")
	if all {
		ds = "*"
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d", ds, w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// Contains reports whether t falls in the window, in time zone loc.
func (w Window) Contains(t time.Time, loc *time.Location) bool {
	lt := t.In(loc)
	d := int(lt.Weekday())
	m := lt.Hour()*60 + lt.Minute()
	if w.Start < w.End {
		return w.Days[d] && w.Start <= m && m < w.End
	}
	// Crosses midnight: the evening part on a listed day, the morning
	// part on the day after a listed day.
	return w.Days[d] && m >= w.Start || w.Days[(d+6)%7] && m < w.End
}
