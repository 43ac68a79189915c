package store

import (
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// changeRingMax is how many of the latest changes the ring keeps. A
// replicator that follows the changes stream is a few groups behind at
// most; 8192 changes are about a second of strict-mode intake.
const changeRingMax = 8192

// changeRing holds the latest durable changes, in stamp order, each as
// the changes stream sends it (Origin, and Inline or InChunks), so that a
// changes stream that keeps up reads neither the change log nor the
// rows: before, each wake-up of a stream opened a view (waiting for the
// fsync in flight), iterated the log from its cursor and read every
// changed row back, about a tenth of each dbd's CPU in strict mode.
//
// Unlike the log, which keeps a row's latest change only, the ring keeps
// every change: a row changed twice since a cursor is sent twice, the
// older state first. That is still a true durable state of the row each
// time, and a reader merging by maximum ends the same.
//
// The syncer adds each group once it is durable, before it wakes the
// streams (WaitChange). Every change with a stamp above low is in the
// ring; low is the last stamp on disk when the store opened, then rises
// as old changes are dropped.
type changeRing struct {
	mu   sync.RWMutex
	rows []Row // a circular buffer of n rows from head, in stamp order
	head int
	n    int
	low  uint64
}

// add appends a durable group's changes. It sorts them: a group lists its
// rows in the order it first touched them, and a row touched again later
// in the group has a later stamp.
func (r *changeRing) add(rows []Row) {
	if len(rows) == 0 {
		return
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Stamp < rows[j].Stamp })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rows == nil {
		r.rows = make([]Row, changeRingMax)
	}
	for _, row := range rows {
		if r.n == len(r.rows) {
			r.low = r.rows[r.head].Stamp
			r.rows[r.head] = Row{}
			r.head = (r.head + 1) % len(r.rows)
			r.n--
		}
		r.rows[(r.head+r.n)%len(r.rows)] = row
		r.n++
	}
}

// since appends to out up to max changes with a stamp above after, in
// stamp order, and returns it. ok is false if the ring no longer holds
// every change above after (read the log instead).
func (r *changeRing) since(after uint64, max int, out []Row) (_ []Row, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if after < r.low {
		return out, false
	}
	at := func(i int) *Row { return &r.rows[(r.head+i)%len(r.rows)] }
	i := sort.Search(r.n, func(i int) bool { return at(i).Stamp > after })
	for ; i < r.n && len(out) < max; i++ {
		out = append(out, *at(i))
	}
	return out, true
}

// RecentChanges appends to out up to max of the changes with a stamp above
// after, in stamp order, from memory: each row as View.Changes gives it,
// except that a row changed more than once since after comes once for each
// change. ok is false when they are not all in memory any more (after is
// too old, or the store was opened after it): read them with
// View.Changes then. Every change given is durable.
func (s *Store) RecentChanges(after uint64, max int, out []Row) (_ []Row, ok bool) {
	return s.ring.since(after, max, out)
}

// RecentContent calls fn with the content of a row RecentChanges gave, as
// View.Chunks does, without a view: a view waits for the fsync in flight,
// and a content never changes once its row is durable (its key is its
// hash, and rows are never removed).
func (s *Store) RecentContent(row Row, fn func(chunk []byte) error) error {
	if !row.InChunks {
		return fn(row.Inline)
	}
	p := contentPrefix(row.Table, row.Key)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("read content of %s %s: %w", row.Table, row.Key, err)
	}
	defer it.Close()
	return eachChunk(it, row.Table, row.Key, fn)
}
