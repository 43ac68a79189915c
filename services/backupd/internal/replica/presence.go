package replica

import (
	"slices"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// maxKnown bounds the rows a pump's presence remembers; when it is full it
// starts again empty (a forgotten row only sends its mail to the marker).
const maxKnown = 1 << 16

// presence is what one pump session knows to be on both of its sites: the
// mail, header and body rows it merged into dst and dst acknowledged, with
// the state it sent. Such a row is durable at dst (merges go on the
// session's one connection, and a dst that lost its disk or came back from
// an older copy ends the session) and at src (the changes stream shows
// durable rows only, and rows are never removed). A mail whose receive row
// is in a batch and whose other three rows are in it or known here is on
// both sites once the batch is merged, so its mark goes in that merge
// (markInBatch) and it needs no marker round.
//
// Rows of one mail are mostly in one batch, but a body or header shared by
// many mails (one message to many, smtp-source's one body) is written
// once and then only found: without this, every later mail that shares it
// took a marker round (a probe and a mark at each site).
//
// Only the session's merge loop uses it; a new session starts it empty.
type presence struct {
	rows  map[model.Key]knownRow     // merged and acknowledged this session
	mails map[model.Key][2]model.Key // mail key -> header and body keys
	batch map[model.Key]int          // the batch being built: key -> index in rows
}

// knownRow is a row merged into dst: the state sent (dst's is at least
// that), and what a merge of its state alone needs.
type knownRow struct {
	table model.Table
	size  uint64
	state model.State
}

// reset forgets everything: a new session may have a dst that lost rows.
func (k *presence) reset() {
	k.rows, k.mails, k.batch = map[model.Key]knownRow{}, map[model.Key][2]model.Key{}, map[model.Key]int{}
}

// begin indexes the rows of the batch about to be merged: those of the
// four tables a mail's mark goes on, the only ones looked up.
func (k *presence) begin(rows []wire.Row) {
	clear(k.batch)
	for i := range rows {
		switch rows[i].Table {
		case model.Receive, model.Mail, model.Header, model.Body:
			k.batch[rows[i].Key] = i
		}
	}
}

// mail records the header and body keys of a mail row.
func (k *presence) mail(m mailRow) {
	if len(k.mails) >= maxKnown {
		clear(k.mails)
	}
	k.mails[m.key] = [2]model.Key{m.header, m.body}
}

func (k *presence) has(key model.Key) bool {
	if _, ok := k.batch[key]; ok {
		return true
	}
	_, ok := k.rows[key]
	return ok
}

// complete reports whether the mail's mail, header and body rows are in
// the batch or known.
func (k *presence) complete(mail model.Key) bool {
	hb, ok := k.mails[mail]
	return ok && k.has(mail) && k.has(hb[0]) && k.has(hb[1])
}

// markInBatch sets the backed-up mark, in the merge about to be sent, on
// the four rows of each mail in recv found complete (recv[i].at set), and
// returns the rows to merge, the receive rows left for the marker and how
// many mails it marked. A row of such a mail that is not in the batch is
// known to be at dst: it is added as its state alone (the state last sent
// plus the mark, no content), once.
//
// The merge commits the rows with their mark in one transaction: once dst
// has them, the mail is on both sites, and no one sees the mark before
// that. src gets the mark back by replication: dst's change holds exactly
// the state sent, so the reverse pump sends it without content, under the
// reverse cursor like any other merge. So such a mail needs no marker
// round and no held-back cursor, and src writes no local mark that would
// travel to dst again, content and all, and be written there a second
// time. Only for MinCopies of at most 2: the two ends of one pump are two
// sites.
//
// The merge holds at most maxRows rows (a merge of more is refused by the
// encoder before it is sent, wire.MaxMergeRows): a mail whose rows of
// earlier batches would not fit is left for the marker. Before 2026-12-03
// they were added regardless, a full batch went over the bound, and the
// session ended with a merge error; the next one, its presence empty,
// merged that batch, and the next full batch with a shared body failed
// again.
func (k *presence) markInBatch(rows []wire.Row, recv []pendingRecv, maxRows int) ([]wire.Row, []pendingRecv, int) {
	mark := make(map[model.Key]bool) // row key -> its mark is in the merge
	for _, r := range recv {
		if len(r.at) == 0 {
			continue
		}
		hb := k.mails[r.mail]
		keys := [4]model.Key{r.key, r.mail, hb[0], hb[1]}
		if len(rows)+k.added(mark, keys) > maxRows {
			continue
		}
		for _, key := range keys {
			if _, ok := mark[key]; ok {
				continue
			}
			mark[key] = k.markOne(&rows, key)
		}
	}
	left := recv[:0]
	for _, r := range recv {
		hb := k.mails[r.mail]
		if len(r.at) == 0 || !mark[r.key] || !mark[r.mail] || !mark[hb[0]] || !mark[hb[1]] {
			left = append(left, r)
		}
	}
	return rows, left, len(recv) - len(left)
}

// added counts the rows markOne would add to the merge for keys: those
// not in the batch, not marked in it yet, and known without the mark.
func (k *presence) added(mark map[model.Key]bool, keys [4]model.Key) int {
	n := 0
	for i, key := range keys {
		if _, ok := mark[key]; ok || slices.Contains(keys[:i], key) {
			continue
		}
		if _, ok := k.batch[key]; ok {
			continue
		}
		if k.rows[key].state.Col(model.ColBackedUp) < model.FlagSet {
			n++
		}
	}
	return n
}

// markOne puts the mark on key's row in the merge, or adds its known
// state with the mark. It reports false if a row full of columns cannot
// take it (the marker's set fails the same way).
func (k *presence) markOne(rows *[]wire.Row, key model.Key) bool {
	if i, ok := k.batch[key]; ok {
		// A row streamed twice in one batch: its last change is what dst
		// ends with, so that one carries the mark (merges take maxima).
		r := &(*rows)[i]
		if r.State.Col(model.ColBackedUp) >= model.FlagSet {
			return true
		}
		// The state may be shared with the queued row: change a copy.
		st := r.State.Clone()
		if _, err := st.Set(model.ColBackedUp, model.FlagSet); err != nil {
			return false
		}
		r.State = st
		return true
	}
	kr := k.rows[key]
	if kr.state.Col(model.ColBackedUp) >= model.FlagSet {
		return true // dst holds at least this state
	}
	st := kr.state.Clone()
	if _, err := st.Set(model.ColBackedUp, model.FlagSet); err != nil {
		return false
	}
	*rows = append(*rows, wire.Row{Table: kr.table, Key: key, Size: kr.size, State: st})
	k.batch[key] = len(*rows) - 1
	return true
}

// merged records the mail, header and body rows of a batch dst acknowledged.
func (k *presence) merged(rows []wire.Row) {
	for i := range rows {
		switch rows[i].Table {
		case model.Mail, model.Header, model.Body:
		default:
			continue
		}
		if len(k.rows) >= maxKnown {
			clear(k.rows)
		}
		k.rows[rows[i].Key] = knownRow{table: rows[i].Table, size: max(rows[i].Size, uint64(len(rows[i].Content))), state: rows[i].State}
	}
}
