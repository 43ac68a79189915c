package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// Bounds on a row's state. They keep a decoded state small whatever the input
// and are checked both when a column is set and when a state is decoded.
const (
	MaxNameLen  = 64  // bytes in a column, counter or site name
	MaxColumns  = 256 // status columns per row
	MaxCounters = 64  // counters per row
	MaxSites    = 64  // sites per counter
)

// ErrBadName is returned for a column, counter or site name that is empty,
// too long, or has bytes outside [a-z0-9._-].
var ErrBadName = errors.New("model: bad name")

// ErrBadState is returned by DecodeState for malformed input.
var ErrBadState = errors.New("model: malformed state")

// ErrTooMany is returned when a row would exceed MaxColumns, MaxCounters or
// MaxSites.
var ErrTooMany = errors.New("model: too many columns, counters or sites")

// CheckName reports whether name may name a column, counter or site.
func CheckName(name string) error { return checkName(name) }

// checkName is CheckName for a name still in its encoding too, so a state
// can be checked without a string a name.
func checkName[S ~string | ~[]byte](name S) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: length must be 1..%d", ErrBadName, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w %q: only a-z 0-9 . _ - allowed", ErrBadName, name)
		}
	}
	return nil
}

// State is the mutable part of a row: its status columns and counters
// (SPEC §3). Content and key never change; State only ever rises.
//
// Columns obey "higher dominates": a column is set only to a larger value,
// and two copies merge to the maximum. A counter keeps one count per site;
// copies merge by per-site maximum, and the counter's value is the sum.
// Because both merges are joins of a semilattice, Merge is commutative,
// associative and idempotent, so sites converge in any replication order.
//
// The zero State is empty and ready to use. A State is not safe for
// concurrent mutation.
type State struct {
	Cols     map[string]uint64            // column -> value
	Counters map[string]map[string]uint64 // counter -> site -> that site's count
}

// Col returns the value of a column (0 if unset).
func (s State) Col(name string) uint64 { return s.Cols[name] }

// Counter returns the value of a counter: the sum over sites, saturating at
// math.MaxUint64.
func (s State) Counter(name string) uint64 {
	var sum uint64
	for _, n := range s.Counters[name] {
		if sum > math.MaxUint64-n {
			return math.MaxUint64
		}
		sum += n
	}
	return sum
}

// Set raises column name to v. It reports whether the state changed; a value
// not above the current one changes nothing (a set never lowers).
func (s *State) Set(name string, v uint64) (bool, error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	cur, ok := s.Cols[name]
	if v <= cur {
		return false, nil
	}
	if !ok && len(s.Cols) >= MaxColumns {
		return false, fmt.Errorf("set column %q: %w", name, ErrTooMany)
	}
	if s.Cols == nil {
		s.Cols = make(map[string]uint64)
	}
	s.Cols[name] = v
	return true, nil
}

// Add adds delta to site's count of counter name, saturating at
// math.MaxUint64. A zero delta changes nothing.
func (s *State) Add(name, site string, delta uint64) (bool, error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	if err := CheckName(site); err != nil {
		return false, err
	}
	if delta == 0 {
		return false, nil
	}
	sites, ok := s.Counters[name]
	if !ok {
		if len(s.Counters) >= MaxCounters {
			return false, fmt.Errorf("add to counter %q: %w", name, ErrTooMany)
		}
		if s.Counters == nil {
			s.Counters = make(map[string]map[string]uint64)
		}
		sites = make(map[string]uint64)
		s.Counters[name] = sites
	}
	cur, ok := sites[site]
	if !ok && len(sites) >= MaxSites {
		return false, fmt.Errorf("add to counter %q: %w", name, ErrTooMany)
	}
	if cur > math.MaxUint64-delta {
		delta = math.MaxUint64 - cur
		if delta == 0 {
			return false, nil
		}
	}
	sites[site] = cur + delta
	return true, nil
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	var c State
	if len(s.Cols) > 0 {
		c.Cols = maps.Clone(s.Cols)
	}
	if len(s.Counters) > 0 {
		c.Counters = make(map[string]map[string]uint64, len(s.Counters))
		for n, sites := range s.Counters {
			c.Counters[n] = maps.Clone(sites)
		}
	}
	return c
}

// Merge returns the join of a and b: the maximum of every column and of every
// site's count of every counter. It never modifies a or b. The result may
// exceed the size bounds only if the inputs together do; MergeInto checks.
func Merge(a, b State) State {
	m := a.Clone()
	m.mergeFrom(b)
	return m
}

// MergeInto merges o into s and reports whether s changed. It refuses a
// merge whose result would exceed the size bounds, leaving s unchanged.
func (s *State) MergeInto(o State) (bool, error) {
	m := Merge(*s, o)
	if len(m.Cols) > MaxColumns || len(m.Counters) > MaxCounters {
		return false, fmt.Errorf("merge: %w", ErrTooMany)
	}
	for _, sites := range m.Counters {
		if len(sites) > MaxSites {
			return false, fmt.Errorf("merge: %w", ErrTooMany)
		}
	}
	if m.Equal(*s) {
		return false, nil
	}
	*s = m
	return true, nil
}

func (s *State) mergeFrom(o State) {
	for n, v := range o.Cols {
		if s.Cols == nil {
			s.Cols = make(map[string]uint64)
		}
		if v > s.Cols[n] {
			s.Cols[n] = v
		}
	}
	for n, sites := range o.Counters {
		if s.Counters == nil {
			s.Counters = make(map[string]map[string]uint64)
		}
		mine := s.Counters[n]
		if mine == nil {
			mine = make(map[string]uint64, len(sites))
			s.Counters[n] = mine
		}
		for site, v := range sites {
			if v > mine[site] {
				mine[site] = v
			}
		}
	}
}

// Equal reports whether s and o hold the same values. Absent entries and
// zero values are the same thing.
func (s State) Equal(o State) bool {
	// Compared in place, not through AppendBinary: imapd compares every
	// message of a folder on each change, and the encodings cost two
	// allocations and a sort a state.
	if !within(s.Cols, o.Cols) || !within(o.Cols, s.Cols) {
		return false
	}
	for n, sites := range s.Counters {
		if !within(sites, o.Counters[n]) {
			return false
		}
	}
	for n, sites := range o.Counters {
		if !within(sites, s.Counters[n]) {
			return false
		}
	}
	return true
}

// within reports whether every value of a is the same in b (an absent
// entry reads as 0).
func within(a, b map[string]uint64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// AppendBinary appends the canonical encoding of s to b: equal states encode
// to equal bytes (names sorted, zero values left out). Layout, all integers
// unsigned LEB128 varints:
//
//	ncols { len name value }*  ncounters { len name nsites { len site count }* }*
func (s State) AppendBinary(b []byte) []byte {
	cols := sortedNonZero(s.Cols)
	b = binary.AppendUvarint(b, uint64(len(cols)))
	for _, n := range cols {
		b = appendString(b, n)
		b = binary.AppendUvarint(b, s.Cols[n])
	}
	var ctrs []string
	for _, n := range slices.Sorted(maps.Keys(s.Counters)) {
		if len(sortedNonZero(s.Counters[n])) > 0 {
			ctrs = append(ctrs, n)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(ctrs)))
	for _, n := range ctrs {
		b = appendString(b, n)
		sites := sortedNonZero(s.Counters[n])
		b = binary.AppendUvarint(b, uint64(len(sites)))
		for _, site := range sites {
			b = appendString(b, site)
			b = binary.AppendUvarint(b, s.Counters[n][site])
		}
	}
	return b
}

func sortedNonZero(m map[string]uint64) []string {
	names := make([]string, 0, len(m))
	for n, v := range m {
		if v != 0 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeState decodes a state written by AppendBinary and returns the bytes
// after it. It checks every bound, rejects unsorted or duplicate names and
// zero values (so each state has exactly one encoding), and never panics.
func DecodeState(b []byte) (State, []byte, error) {
	d := decoder{b: b}
	var s State
	d.columns(func(ncols uint64, name []byte, v uint64) {
		if s.Cols == nil {
			s.Cols = make(map[string]uint64, ncols)
		}
		s.Cols[string(name)] = v
	})
	nctr := d.count(MaxCounters)
	var prev []byte
	for i := uint64(0); i < nctr && d.err == nil; i++ {
		n := d.name(prev, i == 0)
		nsites := d.count(MaxSites)
		if d.err == nil && nsites == 0 {
			d.fail("counter without sites")
		}
		sites := make(map[string]uint64, nsites)
		var prevSite []byte
		for j := uint64(0); j < nsites && d.err == nil; j++ {
			site := d.name(prevSite, j == 0)
			v := d.uvarint()
			if d.err == nil && v == 0 {
				d.fail("zero count")
			}
			sites[string(site)] = v
			prevSite = site
		}
		if d.err != nil {
			break
		}
		if s.Counters == nil {
			s.Counters = make(map[string]map[string]uint64, nctr)
		}
		s.Counters[string(n)] = sites
		prev = n
	}
	if d.err != nil {
		return State{}, nil, d.err
	}
	return s, d.b, nil
}

// SplitState splits b into a state's encoding (as AppendBinary writes it)
// and the bytes after it, with DecodeState's checks but without decoding:
// a reader that passes a stored state on unchanged (dbd answering op
// mails) saves the maps and strings of a decode and the sorting of an
// encode.
func SplitState(b []byte) (enc, rest []byte, err error) {
	d := decoder{b: b}
	d.columns(nil)
	nctr := d.count(MaxCounters)
	var prev []byte
	for i := uint64(0); i < nctr && d.err == nil; i++ {
		prev = d.name(prev, i == 0)
		nsites := d.count(MaxSites)
		if d.err == nil && nsites == 0 {
			d.fail("counter without sites")
		}
		var prevSite []byte
		for j := uint64(0); j < nsites && d.err == nil; j++ {
			prevSite = d.name(prevSite, j == 0)
			if v := d.uvarint(); d.err == nil && v == 0 {
				d.fail("zero count")
			}
		}
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	n := len(b) - len(d.b)
	return b[:n:n], d.b, nil
}

// eachColumn calls fn with each column of the state b encodes, in name
// order, with DecodeState's checks of the columns; the counters and
// anything after them are not looked at. name is b's memory.
func eachColumn(b []byte, fn func(name []byte, v uint64)) error {
	d := decoder{b: b}
	d.columns(func(_ uint64, name []byte, v uint64) { fn(name, v) })
	return d.err
}

// columns reads a state's columns, checking them as DecodeState does, and
// calls fn (unless nil) with the number of columns and each column in
// name order; name is d's memory. It stops at the first error (d.err).
func (d *decoder) columns(fn func(ncols uint64, name []byte, v uint64)) {
	ncols := d.count(MaxColumns)
	var prev []byte
	for i := uint64(0); i < ncols && d.err == nil; i++ {
		n := d.name(prev, i == 0)
		v := d.uvarint()
		if d.err == nil && v == 0 {
			d.fail("zero column value")
		}
		if d.err != nil {
			return
		}
		if fn != nil {
			fn(ncols, n, v)
		}
		prev = n
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadState, what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	// binary.Uvarint accepts padded forms such as 0x80 0x00 for 0; they
	// would give one state two encodings.
	if n != uvarintLen(v) {
		d.fail("varint not minimal")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count(max uint64) uint64 {
	n := d.uvarint()
	if n > max {
		d.fail("count out of range")
		return 0
	}
	return n
}

// name reads a name that must sort strictly after prev (unless first);
// the name is a window on the input.
func (d *decoder) name(prev []byte, first bool) []byte {
	l := d.uvarint()
	if d.err != nil {
		return nil
	}
	if l > MaxNameLen || l > uint64(len(d.b)) {
		d.fail("name length out of range")
		return nil
	}
	n := d.b[:l:l]
	d.b = d.b[l:]
	if err := checkName(n); err != nil {
		d.fail(err.Error())
		return nil
	}
	if !first && bytes.Compare(n, prev) <= 0 {
		d.fail("names not sorted")
		return nil
	}
	return n
}
