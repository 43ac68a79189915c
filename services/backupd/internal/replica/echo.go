package replica

import (
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// maxSeen bounds the rows of one generation of a site's seenRows: it
// remembers the rows of the last one or two generations (a forgotten row
// is merged as before: a no-op). An echo comes back within a round trip
// and a merge, some hundreds of rows later under load.
const maxSeen = 1 << 13

// seenRows is what backupd saw one site hold: the latest state of each
// recent row that a changes stream from the site showed, with the site's
// run (status figure "run") the stream was opened in. The stream shows
// durable states only, and within one run a dbd never loses a durable
// state (states only rise), so as long as the site is in that run it
// holds at least that state.
//
// A pump into the site leaves out of its merges every row whose state is
// at or below what the site is known to hold in the run the pump's own
// connection to it is in: merging it would change nothing. These are the
// echoes: a row the A→B pump merged into B comes back in B's changes
// stream, and a row B→A merged into A (the marks) comes back in A's. They
// were merged as no-ops before, a lookup and a state compare at the
// site, and, when a batch held only echoes, a whole merge and its commit.
//
// The run makes it safe: a site brought back from an older copy of its
// store is in another run, and the rows it lost are sent to it again (its
// restored cursor streams them again, and they no longer match). A dbd
// without the figure (older) gives run 0, which matches nothing.
//
// The marks a pump adds to a merge (markInBatch) make the destination's
// state higher than the source's: those rows do not match and go back.
// A three-site chain still propagates: a site's rows are recorded only
// from its own stream, so a row new to the next site is sent to it.
//
// Two generations of maps, the older dropped whole when the newer is
// full: a map that forgot its oldest row at each insert (a ring of keys
// and a delete) cost backupd a sixth of its CPU in strict mode, its
// lookups probing past the deleted slots.
//
// Shared by every pump of a site; safe for concurrent use. Keys are
// unique across tables (model.KeyOf).
type seenRows struct {
	mu       sync.Mutex
	cur, old map[model.Key]seenRow
}

type seenRow struct {
	run   uint64
	state model.State // not modified: stream rows' states are not (see markOne)
}

func newSeenRows() *seenRows {
	return &seenRows{cur: make(map[model.Key]seenRow, maxSeen)}
}

// saw records that the site, in run run, holds row r's state (or more).
func (s *seenRows) saw(run uint64, r *wire.Row) {
	if run == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.cur[r.Key]
	if !ok {
		old, ok = s.old[r.Key]
	}
	// A stream may show an older state of a row after a newer one
	// (another session, or the ring's changes since an older cursor):
	// keep the higher.
	if ok && old.run == run && atMost(r.State, old.state) {
		return
	}
	if _, in := s.cur[r.Key]; !in && len(s.cur) >= maxSeen {
		s.old, s.cur = s.cur, make(map[model.Key]seenRow, maxSeen)
	}
	s.cur[r.Key] = seenRow{run, r.State}
}

// holds reports whether the site, in run run, is known to hold r's state
// or more (r need not carry its content: the site has the row).
func (s *seenRows) holds(run uint64, r *wire.Row) bool {
	if run == 0 {
		return false
	}
	s.mu.Lock()
	old, ok := s.cur[r.Key]
	if !ok {
		old, ok = s.old[r.Key]
	}
	s.mu.Unlock()
	return ok && old.run == run && atMost(r.State, old.state)
}

// atMost reports whether merging a into b changes nothing: every column
// and every site's count of a is at most b's.
func atMost(a, b model.State) bool {
	for n, v := range a.Cols {
		if v > b.Cols[n] {
			return false
		}
	}
	for n, sites := range a.Counters {
		theirs := b.Counters[n]
		for site, v := range sites {
			if v > theirs[site] {
				return false
			}
		}
	}
	return true
}
