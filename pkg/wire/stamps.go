package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Stamps is what a status answer says about dbd's change stamps. The
// stamps of dbd's current run start above Floor, which is at least the
// time dbd opened its store in microseconds, so that a store restored
// from an older copy, or rebuilt empty, never hands out a stamp again
// that a replicator's cursor has passed. Between Before (the last stamp
// on disk at that moment) and Floor lies a gap of stamps that no change
// has.
type Stamps struct {
	Last   uint64 // "stamp": the latest durable change
	Before uint64 // "stamp.before"
	Floor  uint64 // "stamp.floor"
	// Rows is the sum of the "rows.TABLE" figures, 0 if the answer has
	// none: the store holds one change-log entry a row, so no cursor is
	// behind by more. Stamps are microsecond times, and the stamps of
	// runs before the last one leave gaps Behind cannot see; a cursor of
	// 0 (a direction never replicated) counted every microsecond since
	// 1970, about 1.8e15.
	Rows uint64
}

// StampsOf reads the stamp figures of a status answer. A dbd that sends
// no "stamp.floor" (older than the figure) made no gap: Before and Floor
// are then both Last.
func StampsOf(figs []Figure) (Stamps, error) {
	var s Stamps
	var ok bool
	var err error
	if s.Last, ok, err = FigureUint(figs, "stamp"); err != nil {
		return Stamps{}, err
	} else if !ok {
		return Stamps{}, fmt.Errorf("status has no stamp figure")
	}
	if s.Before, _, err = FigureUint(figs, "stamp.before"); err != nil {
		return Stamps{}, err
	}
	if s.Floor, _, err = FigureUint(figs, "stamp.floor"); err != nil {
		return Stamps{}, err
	}
	if s.Floor == 0 {
		s.Before, s.Floor = s.Last, s.Last
	}
	for _, f := range figs {
		if !strings.HasPrefix(f.Name, "rows.") {
			continue
		}
		n, err := strconv.ParseUint(f.Value, 10, 64)
		if err != nil {
			return Stamps{}, fmt.Errorf("status figure %s %q: %w", f.Name, f.Value, err)
		}
		s.Rows += n
	}
	return s, nil
}

// FigureUint reads the decimal figure name of a status answer; ok is false
// if the answer has none.
func FigureUint(figs []Figure, name string) (v uint64, ok bool, err error) {
	for _, f := range figs {
		if f.Name == name {
			v, err := strconv.ParseUint(f.Value, 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("status figure %s %q: %w", name, f.Value, err)
			}
			return v, true, nil
		}
	}
	return 0, false, nil
}

// Behind returns how many changes above cursor there may be: the stamps
// between cursor and Last, without the gap that no change has. It is an
// upper bound on the rows to send (dbd keeps one change-log entry a row,
// at its latest stamp). A cursor from an earlier run of a lost copy of the
// store may lie in the gap or above Before; the changes above it are then
// those of the current run. With Rows known, the answer is at most Rows.
func (s Stamps) Behind(cursor uint64) uint64 {
	n := s.stampsAbove(cursor)
	if s.Rows > 0 && n > s.Rows {
		return s.Rows
	}
	return n
}

func (s Stamps) stampsAbove(cursor uint64) uint64 {
	if cursor >= s.Last {
		return 0
	}
	if s.Last <= s.Floor || cursor >= s.Floor {
		return s.Last - cursor
	}
	n := s.Last - s.Floor
	if cursor < s.Before {
		n += s.Before - cursor
	}
	return n
}
