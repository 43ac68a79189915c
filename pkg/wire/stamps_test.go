package wire

import "testing"

func TestStampsOf(t *testing.T) {
	figs := []Figure{{"site", "a"}, {"stamp", "1000012"}, {"stamp.before", "7"}, {"stamp.floor", "1000000"},
		{"rows.body", "3"}, {"rows.mail", "4"}, {"connections", "9"}}
	s, err := StampsOf(figs)
	if err != nil || s != (Stamps{Last: 1000012, Before: 7, Floor: 1000000, Rows: 7}) {
		t.Fatalf("StampsOf = %+v, %v", s, err)
	}
	// A dbd older than the floor figures has no gap.
	s, err = StampsOf([]Figure{{"stamp", "42"}})
	if err != nil || s != (Stamps{Last: 42, Before: 42, Floor: 42}) {
		t.Fatalf("StampsOf without floor = %+v, %v", s, err)
	}
	for _, bad := range [][]Figure{nil, {{"site", "a"}}, {{"stamp", "x"}}, {{"stamp", "1"}, {"stamp.floor", "-1"}}, {{"stamp", "1"}, {"rows.body", "x"}}} {
		if _, err := StampsOf(bad); err == nil {
			t.Errorf("StampsOf(%v) accepted", bad)
		}
	}
}

func TestStampsBehind(t *testing.T) {
	// The last run opened with 7 stamps on disk and a floor of 1,000,000;
	// it has made 12 changes since.
	s := Stamps{Last: 1000012, Before: 7, Floor: 1000000}
	for _, c := range []struct {
		cursor, want uint64
	}{
		{1000012, 0},
		{2000000, 0},  // ahead: nothing to send
		{1000005, 7},  // within this run
		{1000000, 12}, // everything of this run
		{7, 12},       // everything before the run is merged
		{3, 16},       // 4 changes before the run, 12 in it
		{500000, 12},  // in the gap: a cursor of a lost copy
		{0, 19},
	} {
		if got := s.Behind(c.cursor); got != c.want {
			t.Errorf("Behind(%d) = %d, want %d", c.cursor, got, c.want)
		}
	}
	// No change yet in this run: the gap is not behind anyone.
	idle := Stamps{Last: 7, Before: 7, Floor: 1000000}
	if got := idle.Behind(5); got != 2 {
		t.Errorf("idle Behind(5) = %d, want 2", got)
	}
}

// TestStampsBehindRows: with the row count known, no cursor is behind by
// more changes than the store has rows. A store restarted once has
// stamps of its first run below Before that the gap figures do not
// describe, and a cursor of 0 counted every microsecond since 1970.
func TestStampsBehindRows(t *testing.T) {
	const us = 1_796_000_000_000_000 // a stamp of late 2026
	s := Stamps{Last: us + 500, Before: us - 100, Floor: us, Rows: 40}
	if got := s.Behind(0); got != 40 {
		t.Errorf("Behind(0) = %d, want the 40 rows", got)
	}
	if got := s.Behind(us + 490); got != 10 {
		t.Errorf("Behind(last-10) = %d, want 10", got)
	}
	s.Rows = 0 // unknown: the stamp bound alone
	if got := s.Behind(0); got != 500+us-100 {
		t.Errorf("Behind(0) without rows = %d", got)
	}
}
