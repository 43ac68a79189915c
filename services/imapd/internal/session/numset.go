package session

import (
	"cmp"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// A SEARCH's sequence and UID sets are normalised once per command
// (sorted, merged, "*" resolved) and looked up by binary search. Before
// (until 2026-12-03) each mail was compared with each range of the set:
// go-imap's 50 KiB command line holds some 10,000 ranges, which over
// 100,000 mails was 10^9 comparisons for one command
// (TestSearchSetProbes).

// span is the numbers lo to hi, both included.
type span struct{ lo, hi uint32 }

// spanSet is a normalised sequence or UID set: its spans sorted, apart
// and not adjacent.
type spanSet []span

// setProbe, if set (tests), is called for each span a lookup compares.
var setProbe func()

// newSpanSet normalises the n ranges at returns: start and stop, either
// bound 0 meaning "*", which is star; a range may be given high to low
// (RFC 9051 §9: "2:4" and "4:2" are the same).
func newSpanSet(n int, at func(i int) (start, stop uint32), star uint32) spanSet {
	s := make(spanSet, 0, n)
	for i := range n {
		lo, hi := at(i)
		if lo == 0 {
			lo = star
		}
		if hi == 0 {
			hi = star
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		s = append(s, span{lo, hi})
	}
	slices.SortFunc(s, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	out := s[:0]
	for _, sp := range s {
		// Overlapping or adjacent (lo-1 cannot wrap: lo is 0 only in
		// the first span, or then lo <= the previous hi).
		if k := len(out); k > 0 && (sp.lo <= out[k-1].hi || sp.lo-1 == out[k-1].hi) {
			out[k-1].hi = max(out[k-1].hi, sp.hi)
			continue
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}

func seqSpans(set imap.SeqSet, n uint32) spanSet {
	return newSpanSet(len(set), func(i int) (uint32, uint32) { return set[i].Start, set[i].Stop }, n)
}

func uidSpans(set imap.UIDSet, last imap.UID) spanSet {
	return newSpanSet(len(set), func(i int) (uint32, uint32) { return uint32(set[i].Start), uint32(set[i].Stop) }, uint32(last))
}

// contains reports whether x is in s, in O(log len(s)).
func (s spanSet) contains(x uint32) bool {
	i, j := 0, len(s)
	for i < j { // the first span that does not end below x
		h := int(uint(i+j) >> 1)
		if setProbe != nil {
			setProbe()
		}
		if s[h].hi < x {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(s) && s[i].lo <= x
}

// critSets are the sequence and UID sets of a SEARCH's criteria,
// normalised, in the criteria's shape: seq[i] is cr.SeqNum[i], not[i]
// cr.Not[i]'s, and so on.
type critSets struct {
	seq, uid []spanSet
	not      []critSets
	or       [][2]critSets
}

// newCritSets normalises cr's sets for a view of n mails whose last UID
// is last.
func newCritSets(cr *imap.SearchCriteria, n uint32, last imap.UID) critSets {
	var cs critSets
	for _, set := range cr.SeqNum {
		cs.seq = append(cs.seq, seqSpans(set, n))
	}
	for _, set := range cr.UID {
		cs.uid = append(cs.uid, uidSpans(set, last))
	}
	for i := range cr.Not {
		cs.not = append(cs.not, newCritSets(&cr.Not[i], n, last))
	}
	for i := range cr.Or {
		cs.or = append(cs.or, [2]critSets{newCritSets(&cr.Or[i][0], n, last), newCritSets(&cr.Or[i][1], n, last)})
	}
	return cs
}
