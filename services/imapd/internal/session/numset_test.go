package session

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// containsLinear is the lookup SEARCH used before numset.go, range by
// range: the reference the normalised sets must agree with.
func containsLinear(set imap.SeqSet, x, star uint32) bool {
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = star
		}
		if stop == 0 {
			stop = star
		}
		if start > stop {
			start, stop = stop, start
		}
		if x >= start && x <= stop {
			return true
		}
	}
	return false
}

// checkSpans reports the first way s is not normalised, or "".
func checkSpans(s spanSet) string {
	for i, sp := range s {
		if sp.lo > sp.hi {
			return "a span runs backwards"
		}
		if i > 0 && uint64(s[i-1].hi)+1 >= uint64(sp.lo) {
			return "spans out of order, overlapping or adjacent"
		}
	}
	return ""
}

// agree checks seqSpans(set, star) against containsLinear at every bound
// of set, their neighbours, the ends of uint32 and a few more.
func agree(t *testing.T, set imap.SeqSet, star uint32, more ...uint32) {
	t.Helper()
	s := seqSpans(set, star)
	if msg := checkSpans(s); msg != "" {
		t.Fatalf("seqSpans(%v, *=%d) = %v: %s", set, star, s, msg)
	}
	probe := append([]uint32{0, 1, star - 1, star, star + 1, math.MaxUint32 - 1, math.MaxUint32}, more...)
	for _, r := range set {
		for _, b := range []uint32{r.Start, r.Stop} {
			probe = append(probe, b-1, b, b+1)
		}
	}
	for _, x := range probe {
		if got, want := s.contains(x), containsLinear(set, x, star); got != want {
			t.Fatalf("seqSpans(%v, *=%d) = %v: contains(%d) = %v, want %v", set, star, s, x, got, want)
		}
	}
}

// TestSpanSetAgrees: on random sets (overlapping, adjacent, reversed,
// "*" at either end, "*" of 0 for an empty view), the normalised set
// holds exactly what the range-by-range lookup finds, and is sorted,
// apart and not adjacent.
func TestSpanSetAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		domain := uint32(1 + rng.IntN(60))
		star := uint32(rng.IntN(int(domain) + 1))
		var set imap.SeqSet
		for range rng.IntN(12) {
			r := imap.SeqRange{Start: uint32(rng.IntN(int(domain) + 1)), Stop: uint32(rng.IntN(int(domain) + 1))}
			set = append(set, r)
		}
		all := make([]uint32, domain+2)
		for i := range all {
			all[i] = uint32(i)
		}
		agree(t, set, star, all...)
	}
	// The edges of uint32.
	agree(t, imap.SeqSet{{Start: math.MaxUint32, Stop: math.MaxUint32}, {Start: 1, Stop: math.MaxUint32 - 1}}, 5)
	agree(t, imap.SeqSet{{Start: math.MaxUint32 - 1, Stop: 0}}, math.MaxUint32)
	agree(t, nil, 7)
	// UID sets go the same way.
	u := uidSpans(imap.UIDSet{{Start: 9, Stop: 0}, {Start: 3, Stop: 4}, {Start: 5, Stop: 5}}, 12)
	if want := (spanSet{{3, 5}, {9, 12}}); !slicesEqual(u, want) {
		t.Errorf("uidSpans(9:*,3:4,5, last 12) = %v, want %v", u, want)
	}
}

func slicesEqual(a, b spanSet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSearchSetProbes: SEARCH with a set of 5,000 ranges over 20,000
// mails compares each mail with a few spans of the normalised set
// (binary search), not with each range: before, 20,000 × ~5,000
// comparisons; go-imap's 50 KiB command line holds ~10,000 ranges, and
// 100,000 mails then took 10^9. Counted, not timed.
func TestSearchSetProbes(t *testing.T) {
	const mails, ranges = 20_000, 5_000
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i := range ranges {
		seqs = append(seqs, imap.SeqRange{Start: uint32(4*i + 1), Stop: uint32(4*i + 2)})
		uids = append(uids, imap.UIDRange{Start: imap.UID(4*i + 2), Stop: imap.UID(4*i + 3)})
	}
	cr := &imap.SearchCriteria{
		SeqNum: []imap.SeqSet{seqs},
		Not:    []imap.SearchCriteria{{UID: []imap.UIDSet{uids}}},
	}
	var probes int
	setProbe = func() { probes++ }
	defer func() { setProbe = nil }()
	sets := newCritSets(cr, mails, mails)
	found := 0
	for i := range mails {
		c := &candidate{seq: uint32(i + 1), n: mails, last: mails, msg: &message{uid: imap.UID(i + 1)}}
		if c.match(cr, &sets) {
			found++
		}
	}
	// Sequence numbers 4i+1 and 4i+2 up to 20,000, less UIDs 4i+2.
	if found != ranges {
		t.Errorf("SEARCH found %d mails, want %d", found, ranges)
	}
	if limit := mails * 2 * 16; probes > limit {
		t.Errorf("SEARCH compared %d spans over %d mails, want at most %d (about 2 log2(%d) a mail)", probes, mails, limit, ranges)
	}
}

// FuzzSpanSet: any set (up to 100 ranges from the input's bytes, 4
// bytes a bound) and "*" value normalise to a set that holds exactly
// what the range-by-range lookup finds.
func FuzzSpanSet(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 5}, uint32(9), uint32(3))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 2, 255, 255, 255, 255, 0, 0, 0, 0}, uint32(0), uint32(1))
	f.Add([]byte{0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 0, 9}, uint32(4), uint32(8))
	f.Fuzz(func(t *testing.T, data []byte, star, x uint32) {
		var set imap.SeqSet
		for len(data) >= 8 && len(set) < 100 {
			set = append(set, imap.SeqRange{Start: binary.BigEndian.Uint32(data), Stop: binary.BigEndian.Uint32(data[4:])})
			data = data[8:]
		}
		agree(t, set, star, x)
	})
}

// TestIndicesAgree: FETCH's and STORE's resolution of sequence and UID
// sets (seqIndices, uidIndices, built on the normalised sets) names
// exactly the messages the range-by-range reading names, ascending and
// once each.
func TestIndicesAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		n := rng.IntN(40)
		var set imap.SeqSet
		for range 1 + rng.IntN(8) {
			set = append(set, imap.SeqRange{Start: uint32(rng.IntN(n + 3)), Stop: uint32(rng.IntN(n + 3))})
		}
		var want []int
		for i := range n {
			if containsLinear(set, uint32(i+1), uint32(n)) {
				want = append(want, i)
			}
		}
		if got := seqIndices(set, n); !slices.Equal(got, want) {
			t.Fatalf("seqIndices(%v, %d) = %v, want %v", set, n, got, want)
		}
		// The same numbers as UIDs of a view with gaps (UID 3i+1).
		view := make([]*message, n)
		var uset imap.UIDSet
		for i := range view {
			view[i] = &message{uid: imap.UID(3*i + 1)}
		}
		for _, r := range set {
			uset = append(uset, imap.UIDRange{Start: imap.UID(r.Start), Stop: imap.UID(r.Stop)})
		}
		want = want[:0]
		for i, m := range view {
			if containsLinear(set, uint32(m.uid), uint32(view[n-1].uid)) {
				want = append(want, i)
			}
		}
		if got := uidIndices(uset, view); n > 0 && !slices.Equal(got, want) {
			t.Fatalf("uidIndices(%v) over UIDs 3i+1 of %d = %v, want %v", uset, n, got, want)
		}
	}
}
