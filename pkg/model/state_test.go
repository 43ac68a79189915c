package model

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// Small alphabets make names collide, so merges meet the same column or
// site from both sides.
var (
	colNames  = []string{"a", "b", "verdict", "deleted"}
	ctrNames  = []string{"x", "y"}
	siteNames = []string{"s1", "s2", "s3"}
)

// value draws column values that collide often and reach the extremes.
func value() *rapid.Generator[uint64] {
	return rapid.OneOf(rapid.Uint64Range(0, 4), rapid.Uint64(), rapid.Just(uint64(math.MaxUint64)))
}

// genState draws a state built by random Set and Add calls.
func genState() *rapid.Generator[State] {
	return rapid.Custom(func(t *rapid.T) State {
		var s State
		for i := rapid.IntRange(0, 8).Draw(t, "ops"); i > 0; i-- {
			var err error
			if rapid.Bool().Draw(t, "set") {
				_, err = s.Set(rapid.SampledFrom(colNames).Draw(t, "col"), value().Draw(t, "v"))
			} else {
				_, err = s.Add(rapid.SampledFrom(ctrNames).Draw(t, "ctr"), rapid.SampledFrom(siteNames).Draw(t, "site"), value().Draw(t, "delta"))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}

// logical is an independent description of a state's meaning: its non-zero
// entries, sorted. Two states mean the same iff their logical forms agree.
func logical(s State) string {
	var lines []string
	for n, v := range s.Cols {
		if v != 0 {
			lines = append(lines, fmt.Sprintf("col %s=%d", n, v))
		}
	}
	for n, sites := range s.Counters {
		for site, v := range sites {
			if v != 0 {
				lines = append(lines, fmt.Sprintf("ctr %s@%s=%d", n, site, v))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func enc(s State) []byte { return s.AppendBinary(nil) }

func TestMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genState().Draw(t, "a"), genState().Draw(t, "b"), genState().Draw(t, "c")
		ea, eb := enc(a), enc(b)
		if ab, ba := Merge(a, b), Merge(b, a); !ab.Equal(ba) {
			t.Fatalf("not commutative: %s vs %s", logical(ab), logical(ba))
		}
		if l, r := Merge(Merge(a, b), c), Merge(a, Merge(b, c)); !l.Equal(r) {
			t.Fatalf("not associative: %s vs %s", logical(l), logical(r))
		}
		if aa := Merge(a, a); !aa.Equal(a) {
			t.Fatalf("not idempotent: %s vs %s", logical(aa), logical(a))
		}
		if abb := Merge(Merge(a, b), b); !abb.Equal(Merge(a, b)) {
			t.Fatal("merging b twice differs from merging it once")
		}
		if !bytes.Equal(enc(a), ea) || !bytes.Equal(enc(b), eb) {
			t.Fatal("Merge modified an input")
		}
		// The join is an upper bound: no column or count goes down.
		m := Merge(a, b)
		for _, n := range colNames {
			if m.Col(n) != max(a.Col(n), b.Col(n)) {
				t.Fatalf("Merge col %s = %d, want max(%d, %d)", n, m.Col(n), a.Col(n), b.Col(n))
			}
		}
		for _, n := range ctrNames {
			for _, site := range siteNames {
				if got, want := m.Counters[n][site], max(a.Counters[n][site], b.Counters[n][site]); got != want {
					t.Fatalf("Merge counter %s@%s = %d, want %d", n, site, got, want)
				}
			}
		}
	})
}

func TestSetNeverLowers(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var s State
		model := map[string]uint64{}
		for i := rapid.IntRange(1, 30).Draw(t, "ops"); i > 0; i-- {
			n, v := rapid.SampledFrom(colNames).Draw(t, "col"), value().Draw(t, "v")
			changed, err := s.Set(n, v)
			if err != nil {
				t.Fatal(err)
			}
			if want := v > model[n]; changed != want {
				t.Fatalf("Set(%s, %d) over %d changed = %v, want %v", n, v, model[n], changed, want)
			}
			model[n] = max(model[n], v)
			for _, c := range colNames {
				if s.Col(c) != model[c] {
					t.Fatalf("Col(%s) = %d, want %d", c, s.Col(c), model[c])
				}
			}
		}
	})
}

func TestMergeIntoChanged(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, o := genState().Draw(t, "s"), genState().Draw(t, "o")
		before := s.Clone()
		changed, err := s.MergeInto(o)
		if err != nil {
			t.Fatal(err)
		}
		if want := !Merge(before, o).Equal(before); changed != want {
			t.Fatalf("MergeInto changed = %v, want %v (%s + %s)", changed, want, logical(before), logical(o))
		}
		if !s.Equal(Merge(before, o)) {
			t.Fatalf("MergeInto gave %s, want %s", logical(s), logical(Merge(before, o)))
		}
		if changed, _ := s.MergeInto(o); changed {
			t.Fatal("second MergeInto of the same state reported a change")
		}
	})
}

func TestMergeIntoBounds(t *testing.T) {
	var a, b State
	for i := range MaxColumns {
		if _, err := a.Set(fmt.Sprintf("a%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Set("b", 1); err != nil {
		t.Fatal(err)
	}
	before := enc(a)
	if _, err := a.MergeInto(b); !errors.Is(err, ErrTooMany) {
		t.Fatalf("MergeInto over MaxColumns = %v, want ErrTooMany", err)
	}
	if !bytes.Equal(enc(a), before) {
		t.Fatal("a refused MergeInto changed the state")
	}
}

// TestCountersAcrossSites replicates random increments between sites in
// random order, with duplicates, and checks that every increment is counted
// exactly once (SPEC §3: counters must count correctly across sites).
func TestCountersAcrossSites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		replicas := make([]State, len(siteNames))
		truth := map[string]uint64{}
		for i := rapid.IntRange(1, 40).Draw(t, "steps"); i > 0; i-- {
			if rapid.IntRange(0, 2).Draw(t, "kind") > 0 {
				// A site increments its own slot.
				k := rapid.IntRange(0, len(replicas)-1).Draw(t, "site")
				n := rapid.SampledFrom(ctrNames).Draw(t, "ctr")
				d := rapid.Uint64Range(0, 1000).Draw(t, "delta")
				if _, err := replicas[k].Add(n, siteNames[k], d); err != nil {
					t.Fatal(err)
				}
				truth[n] += d
			} else {
				// Replication of one site's copy into another's (maybe itself).
				from := rapid.IntRange(0, len(replicas)-1).Draw(t, "from")
				to := rapid.IntRange(0, len(replicas)-1).Draw(t, "to")
				if _, err := replicas[to].MergeInto(replicas[from].Clone()); err != nil {
					t.Fatal(err)
				}
			}
			for k, r := range replicas {
				for _, n := range ctrNames {
					if r.Counter(n) > truth[n] {
						t.Fatalf("site %d counts %s = %d, more than the %d added", k, n, r.Counter(n), truth[n])
					}
				}
			}
		}
		// Final anti-entropy: merge every copy, some twice, in random order.
		order := rapid.Permutation([]int{0, 1, 2, 0, 1, 2}).Draw(t, "order")
		var all State
		for _, k := range order {
			all = Merge(all, replicas[k])
		}
		for _, n := range ctrNames {
			if got := all.Counter(n); got != truth[n] {
				t.Fatalf("Counter(%s) = %d after full merge, want %d", n, got, truth[n])
			}
		}
	})
}

func TestCounterSaturates(t *testing.T) {
	var s State
	for _, site := range []string{"s1", "s1", "s2"} {
		if _, err := s.Add("x", site, math.MaxUint64-1); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Counter("x"); got != math.MaxUint64 {
		t.Errorf("Counter = %d, want saturation at MaxUint64", got)
	}
	if got := s.Counters["x"]["s1"]; got != math.MaxUint64 {
		t.Errorf("site count = %d, want saturation at MaxUint64", got)
	}
}

func TestStateEncodingRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genState().Draw(t, "s")
		tail := rapid.SliceOf(rapid.Byte()).Draw(t, "tail")
		b := append(enc(s), tail...)
		got, rest, err := DecodeState(b)
		if err != nil {
			t.Fatalf("DecodeState(%x): %v", b, err)
		}
		if !bytes.Equal(rest, tail) {
			t.Fatalf("DecodeState rest = %x, want %x", rest, tail)
		}
		if logical(got) != logical(s) {
			t.Fatalf("round trip gave %s, want %s", logical(got), logical(s))
		}
		e, rest, err := SplitState(b)
		if err != nil || !bytes.Equal(e, enc(s)) || !bytes.Equal(rest, tail) {
			t.Fatalf("SplitState(%x) = %x, %x, %v; want %x, %x", b, e, rest, err, enc(s), tail)
		}
	})
}

// TestStateEncodingCanonical checks equal states ⇔ equal bytes, where
// "equal" is judged by the independent logical form, not by Equal (which is
// itself defined by the encoding).
func TestStateEncodingCanonical(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genState().Draw(t, "a"), genState().Draw(t, "b")
		if same, eq := logical(a) == logical(b), bytes.Equal(enc(a), enc(b)); same != eq {
			t.Fatalf("logical equality %v but byte equality %v:\n%s\n--\n%s", same, eq, logical(a), logical(b))
		}
		// The same state reached by a different path encodes the same:
		// rebuild a from its entries in a random order, with explicit zeros.
		var r State
		r.Cols = map[string]uint64{"zero": 0}
		r.Counters = map[string]map[string]uint64{"empty": {}}
		entries := slices.Sorted(maps.Keys(a.Cols))
		for _, n := range rapid.Permutation(entries).Draw(t, "perm") {
			if _, err := r.Set(n, a.Cols[n]); err != nil {
				t.Fatal(err)
			}
		}
		for n, sites := range a.Counters {
			for site, v := range sites {
				if _, err := r.Add(n, site, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !bytes.Equal(enc(r), enc(a)) {
			t.Fatalf("same state, different bytes:\n%x\n%x", enc(r), enc(a))
		}
	})
}

func TestDecodeStateNeverPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.OneOf(
			rapid.SliceOf(rapid.Byte()),
			// Mutations of valid encodings reach deeper than random bytes.
			rapid.Custom(func(t *rapid.T) []byte {
				b := enc(genState().Draw(t, "s"))
				if len(b) > 0 {
					i := rapid.IntRange(0, len(b)-1).Draw(t, "i")
					b[i] = rapid.Byte().Draw(t, "byte")
					b = b[:rapid.IntRange(0, len(b)).Draw(t, "cut")]
				}
				return b
			}),
		).Draw(t, "b")
		checkDecodeState(t, b)
	})
}

// checkDecodeState decodes b and, on success, checks the result is canonical:
// re-encoding gives back exactly the consumed bytes.
func checkDecodeState(t interface{ Fatalf(string, ...any) }, b []byte) {
	s, rest, err := DecodeState(b)
	// SplitState accepts exactly what DecodeState accepts and splits
	// where it stops.
	e, srest, serr := SplitState(b)
	if (err == nil) != (serr == nil) || !bytes.Equal(rest, srest) || err == nil && len(e)+len(srest) != len(b) {
		t.Fatalf("SplitState(%x) = %x, %x, %v; DecodeState's rest %x, %v", b, e, srest, serr, rest, err)
	}
	if serr != nil && !errors.Is(serr, ErrBadState) {
		t.Fatalf("SplitState(%x) error %v does not wrap ErrBadState", b, serr)
	}
	if err != nil {
		if !errors.Is(err, ErrBadState) {
			t.Fatalf("DecodeState(%x) error %v does not wrap ErrBadState", b, err)
		}
		return
	}
	if consumed := b[:len(b)-len(rest)]; !bytes.Equal(enc(s), consumed) {
		t.Fatalf("DecodeState(%x) accepted a non-canonical encoding (re-encodes to %x)", consumed, enc(s))
	}
}

// TestDecodeStateRejects lists encodings that must not decode. The padded
// varint case guards a bug found by TestDecodeStateNeverPanics: DecodeState
// accepted 00 80 00 as the empty state, so the encoding was not canonical.
func TestDecodeStateRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"padded varint count", []byte{0x00, 0x80, 0x00}},
		{"padded varint value", []byte{0x01, 0x01, 'a', 0x81, 0x00, 0x00}},
		{"zero column value", []byte{0x01, 0x01, 'a', 0x00, 0x00}},
		{"unsorted columns", []byte{0x02, 0x01, 'b', 0x01, 0x01, 'a', 0x01, 0x00}},
		{"duplicate columns", []byte{0x02, 0x01, 'a', 0x01, 0x01, 'a', 0x02, 0x00}},
		{"bad name byte", []byte{0x01, 0x01, 'A', 0x01, 0x00}},
		{"too many columns", []byte{0x81, 0x02}},
		{"counter without sites", []byte{0x00, 0x01, 0x01, 'x', 0x00}},
		{"zero count", []byte{0x00, 0x01, 0x01, 'x', 0x01, 0x01, 's', 0x00}},
		{"truncated", []byte{0x01, 0x05, 'a'}},
		{"empty input", nil},
	}
	for _, tt := range tests {
		if s, _, err := DecodeState(tt.in); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: DecodeState(%x) = %s, %v; want ErrBadState", tt.name, tt.in, logical(s), err)
		}
		if e, _, err := SplitState(tt.in); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: SplitState(%x) = %x, %v; want ErrBadState", tt.name, tt.in, e, err)
		}
	}
}

// TestEqualMeansSameMeaning: Equal compares in place; it must agree with
// the states' meanings (and so with their canonical encodings), zero
// entries and all.
func TestEqualMeansSameMeaning(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genState().Draw(t, "a")
		b := a.Clone()
		if rapid.Bool().Draw(t, "other") {
			b = genState().Draw(t, "b")
		}
		if rapid.Bool().Draw(t, "zeros") {
			// Explicit zero entries mean the same as absent ones.
			if b.Cols == nil {
				b.Cols = map[string]uint64{}
			}
			b.Cols[rapid.SampledFrom(colNames).Draw(t, "zcol")] += 0
			if b.Counters == nil {
				b.Counters = map[string]map[string]uint64{}
			}
			n := rapid.SampledFrom(ctrNames).Draw(t, "zctr")
			if b.Counters[n] == nil {
				b.Counters[n] = map[string]uint64{}
			}
			b.Counters[n][rapid.SampledFrom(siteNames).Draw(t, "zsite")] += 0
		}
		same := logical(a) == logical(b)
		if got := a.Equal(b); got != same || b.Equal(a) != same {
			t.Fatalf("Equal = %v, want %v:\n%s\n--\n%s", got, same, logical(a), logical(b))
		}
		if same != bytes.Equal(enc(a), enc(b)) {
			t.Fatalf("meaning and encoding disagree")
		}
	})
}

// TestStateBounds checks MaxColumns, MaxCounters and MaxSites where they
// bite: a state exactly at every bound, with the longest names and the
// largest values, sets, merges, encodes and decodes; one more column,
// counter or site is refused by Set, Add, MergeInto and DecodeState alike,
// and a refused MergeInto leaves the state as it was.
func TestStateBounds(t *testing.T) {
	name := func(p string, i int) string { return fmt.Sprintf("%s%0*d", p, MaxNameLen-len(p), i) }
	var full State
	for i := range MaxColumns {
		if _, err := full.Set(name("c", i), math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	}
	for i := range MaxCounters {
		for j := range MaxSites {
			if _, err := full.Add(name("n", i), name("s", j), math.MaxUint64); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := enc(full)
	got, rest, err := DecodeState(b)
	if err != nil || len(rest) != 0 || !got.Equal(full) {
		t.Fatalf("DecodeState of a state at every bound: %v, %d bytes left", err, len(rest))
	}
	if got.Counter(name("n", 0)) != math.MaxUint64 {
		t.Errorf("Counter of %d saturated sites = %d, want MaxUint64", MaxSites, got.Counter(name("n", 0)))
	}
	if changed, err := full.MergeInto(full.Clone()); changed || err != nil {
		t.Errorf("MergeInto(itself) at the bounds = %v, %v", changed, err)
	}
	if changed, err := full.MergeInto(State{}); changed || err != nil {
		t.Errorf("MergeInto(empty) = %v, %v", changed, err)
	}
	if m := Merge(State{}, full); !m.Equal(full) {
		t.Error("Merge(empty, s) != s")
	}

	one := func(f func(*State) (bool, error)) State {
		var s State
		if _, err := f(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	over := []struct {
		name string
		add  func(*State) (bool, error)
	}{
		{"column", func(s *State) (bool, error) { return s.Set("c-new", 1) }},
		{"counter", func(s *State) (bool, error) { return s.Add("n-new", "s", 1) }},
		{"site", func(s *State) (bool, error) { return s.Add(name("n", 0), "s-new", 1) }},
	}
	for _, tt := range over {
		t.Run(tt.name, func(t *testing.T) {
			s := full.Clone()
			if _, err := tt.add(&s); !errors.Is(err, ErrTooMany) {
				t.Errorf("one %s over the bound: %v, want ErrTooMany", tt.name, err)
			}
			if !s.Equal(full) {
				t.Error("a refused Set or Add changed the state")
			}
			if _, err := s.MergeInto(one(tt.add)); !errors.Is(err, ErrTooMany) {
				t.Errorf("MergeInto one %s over the bound: %v, want ErrTooMany", tt.name, err)
			}
			if !s.Equal(full) {
				t.Error("a refused MergeInto changed the state")
			}
			big := Merge(full, one(tt.add))
			if _, _, err := DecodeState(enc(big)); !errors.Is(err, ErrBadState) {
				t.Errorf("DecodeState of one %s over the bound: %v, want ErrBadState", tt.name, err)
			}
		})
	}
}
