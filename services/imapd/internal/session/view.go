package session

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// message is one mail in a selected mailbox's view.
type message struct {
	uid   imap.UID
	m     mailbox.Message
	flags []imap.Flag
}

// delta is how a fresh listing differs from a session's view: what to
// report to the client, in this order (RFC 9051 §7.4.1, §7.3.1, §7.5.2).
type delta struct {
	// expunged are indices into the old view, in decreasing order, so each
	// one is also the sequence number minus one at the time it is reported.
	expunged []int
	// changed are indices into the view after the expunges whose rows
	// changed (flags may differ).
	changed []int
	// added are the fresh messages above the old UIDNEXT, in UID order.
	added []mailbox.Message
	// late counts fresh messages below the old UIDNEXT that the view never
	// had (acknowledged after a later mail was shown). IMAP forbids a new
	// message below UIDNEXT; they show at the next SELECT (docs/imapd.md).
	late int
}

// diff compares a view (ascending UIDs) with a fresh listing (ascending
// RowNo). uidNext is the view's UIDNEXT. It is pure: no I/O.
func diff(view []*message, fresh []mailbox.Message, uidNext imap.UID) delta {
	var d delta
	i, j := 0, 0
	var kept []int // old indices kept
	for i < len(view) || j < len(fresh) {
		switch {
		case j >= len(fresh) || (i < len(view) && uint64(view[i].uid) < fresh[j].RowNo):
			d.expunged = append(d.expunged, i)
			i++
		case i >= len(view) || fresh[j].RowNo < uint64(view[i].uid):
			if fresh[j].RowNo >= uint64(uidNext) {
				d.added = append(d.added, fresh[j])
			} else {
				d.late++
			}
			j++
		default:
			if !fresh[j].State.Equal(view[i].m.State) {
				d.changed = append(d.changed, len(kept))
			}
			kept = append(kept, i)
			i++
			j++
		}
	}
	slices.Reverse(d.expunged)
	return d
}

// seqRange resolves a sequence set against n messages: the indices it
// names, ascending, without duplicates. "*" is the last message.
func seqIndices(set imap.SeqSet, n int) []int {
	if n == 0 {
		return nil
	}
	var out []int
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = uint32(n)
		}
		if stop == 0 {
			stop = uint32(n)
		}
		if start > stop {
			start, stop = stop, start
		}
		for s := start; s <= stop && s <= uint32(n); s++ {
			out = append(out, int(s)-1)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// uidIndices resolves a UID set against a view: the indices of the
// messages it names, ascending. "*" is the highest UID in the view, so
// "n:*" always names at least the last message (RFC 9051 §6.4.8).
func uidIndices(set imap.UIDSet, view []*message) []int {
	if len(view) == 0 {
		return nil
	}
	last := view[len(view)-1].uid
	var out []int
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = last
		}
		if stop == 0 {
			stop = last
		}
		if start > stop {
			start, stop = stop, start
		}
		lo, _ := slices.BinarySearchFunc(view, start, func(m *message, u imap.UID) int { return cmpUID(m.uid, u) })
		for k := lo; k < len(view) && view[k].uid <= stop; k++ {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func cmpUID(a, b imap.UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// indices resolves a sequence or UID set.
func indices(set imap.NumSet, view []*message) []int {
	switch s := set.(type) {
	case imap.SeqSet:
		return seqIndices(s, len(view))
	case imap.UIDSet:
		return uidIndices(s, view)
	}
	return nil
}
