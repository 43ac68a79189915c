package session

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// message is one mail in a selected folder's view.
type message struct {
	uid   imap.UID // the placement's row number at this site
	m     mailbox.Message
	home  model.FolderID // INBOX for SMTP deliveries, else the APPEND folder
	flags []imap.Flag
}

// change is a message of the view whose row changed.
type change struct {
	i     int      // index into the view after the expunges
	fresh *message // the fresh listing's message
}

// delta is how a fresh listing differs from a session's view: what to
// report to the client, in this order (RFC 9051 §7.4.1, §7.3.1, §7.5.2).
type delta struct {
	// expunged are indices into the old view, in decreasing order, so each
	// one is also the sequence number minus one at the time it is reported.
	expunged []int
	// changed are the messages of the view (after the expunges) whose
	// rows changed (flags may differ).
	changed []change
	// added are the fresh messages above the old UIDNEXT, in UID order.
	added []*message
	// late counts fresh messages below the old UIDNEXT that the view never
	// had. IMAP forbids a new message below UIDNEXT; placements make it
	// impossible (docs/imapd.md §2), the count is a tripwire.
	late int
}

// diff compares a view with a fresh listing (both ascending UIDs).
// uidNext is the view's UIDNEXT. It is pure: no I/O.
func diff(view []*message, fresh []*message, uidNext imap.UID) delta {
	var d delta
	i, j := 0, 0
	var kept []int // old indices kept
	for i < len(view) || j < len(fresh) {
		switch {
		case j >= len(fresh) || (i < len(view) && view[i].uid < fresh[j].uid):
			d.expunged = append(d.expunged, i)
			i++
		case i >= len(view) || fresh[j].uid < view[i].uid:
			if fresh[j].uid >= uidNext {
				d.added = append(d.added, fresh[j])
			} else {
				d.late++
			}
			j++
		default:
			if !fresh[j].m.State.Equal(view[i].m.State) {
				d.changed = append(d.changed, change{i: len(kept), fresh: fresh[j]})
			}
			kept = append(kept, i)
			i++
			j++
		}
	}
	slices.Reverse(d.expunged)
	return d
}

// seqIndices resolves a sequence set against n messages: the indices it
// names, ascending, without duplicates. "*" is the last message. The set
// is normalised first (seqSpans), so overlapping ranges (a command line
// of "1:*,1:*,...") cost one pass, not one each.
func seqIndices(set imap.SeqSet, n int) []int {
	if n == 0 {
		return nil
	}
	var out []int
	for _, sp := range seqSpans(set, uint32(n)) {
		for s := sp.lo; s <= sp.hi && s <= uint32(n); s++ {
			out = append(out, int(s)-1)
		}
	}
	return out
}

// uidIndices resolves a UID set against a view: the indices of the
// messages it names, ascending. "*" is the highest UID in the view, so
// "n:*" always names at least the last message (RFC 9051 §6.4.8).
func uidIndices(set imap.UIDSet, view []*message) []int {
	if len(view) == 0 {
		return nil
	}
	var out []int
	for _, sp := range uidSpans(set, view[len(view)-1].uid) {
		lo, _ := slices.BinarySearchFunc(view, imap.UID(sp.lo), func(m *message, u imap.UID) int { return cmpUID(m.uid, u) })
		for k := lo; k < len(view) && uint32(view[k].uid) <= sp.hi; k++ {
			out = append(out, k)
		}
	}
	return out
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

// errBadSeq answers a FETCH, STORE, COPY or MOVE whose sequence set names
// a message the client has not been told of.
var errBadSeq = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
	Text: "Invalid message sequence number: above the number of messages"}

// indices resolves a sequence or UID set for FETCH, STORE, COPY and MOVE.
// A sequence number above the view's size, or "*" in an empty view, is
// the client's error (RFC 9051 §9, seq-number: the server should answer
// BAD), as Dovecot answers it; a UID that names no message is not (UIDs
// of expunged mail are normal).
func indices(set imap.NumSet, view []*message) ([]int, error) {
	switch s := set.(type) {
	case imap.SeqSet:
		for _, r := range s {
			for _, n := range []uint32{r.Start, r.Stop} {
				if (n == 0 && len(view) == 0) || int64(n) > int64(len(view)) {
					return nil, errBadSeq
				}
			}
		}
		return seqIndices(s, len(view)), nil
	case imap.UIDSet:
		return uidIndices(s, view), nil
	}
	return nil, nil
}
