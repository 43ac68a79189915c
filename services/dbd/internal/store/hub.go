package store

import (
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
)

// Filter selects the rows a watch receives.
type Filter struct {
	Table model.Table
	Keys  map[model.Key]struct{} // nil or empty: every row of Table
	// Parent, if not nil, selects only rows whose parent is *Parent (see
	// model.ParentOf); Keys must then be empty.
	Parent *model.Key
	// With and Without, if not empty, select only rows whose state has
	// column With set (non-zero) and column Without not set (wire.WatchCond).
	With, Without string
}

// Match reports whether row r, in its new state, is selected by f.
func (f *Filter) Match(r *Row) bool { return f.match(r) }

func (f *Filter) match(r *Row) bool {
	if r.Table != f.Table {
		return false
	}
	if f.With != "" && r.State.Cols[f.With] == 0 || f.Without != "" && r.State.Cols[f.Without] != 0 {
		return false
	}
	if f.Parent != nil {
		return r.HasParent && r.Parent == *f.Parent
	}
	if len(f.Keys) == 0 {
		return true
	}
	_, ok := f.Keys[r.Key]
	return ok
}

// Subscription receives committed changes of the rows its filter selects,
// in commit order: wait on Ready, then Take. The rows wait in a queue that
// grows with the backlog (an idle watch holds no buffer: dbd may serve
// thousands). If the subscriber falls more than its limit behind, the
// subscription ends and Overflowed reports true: the subscriber must read
// the current state again and resubscribe. Callers must call Close.
type Subscription struct {
	// Ready holds a value when rows wait, and is closed when the
	// subscription has ended (Take still returns the rows queued before).
	Ready <-chan struct{}

	ready    chan struct{}
	filter   Filter
	h        *hub
	max      int   // queued rows allowed
	queue    []Row // guarded by h.mu
	overflow bool  // guarded by h.mu
	closed   bool  // guarded by h.mu
}

// Take appends the waiting rows to dst in commit order and reports whether
// the subscription is still open. After it reported false, no rows come.
func (s *Subscription) Take(dst []Row) ([]Row, bool) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	dst = append(dst, s.queue...)
	clear(s.queue)
	s.queue = s.queue[:0]
	if cap(s.queue) > queueKeep {
		s.queue = nil // a burst's queue is not kept for an idle watch
	}
	return dst, !s.closed
}

// queueKeep is the largest queue capacity a subscription keeps when empty.
const queueKeep = 64

// Overflowed reports whether the subscription ended because the
// subscriber fell behind (as opposed to Close or store shutdown).
func (s *Subscription) Overflowed() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.overflow
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.removeLocked(s)
	s.queue = nil
}

// hub fans committed changes out to subscriptions. publish is called only
// by the writer, after the commit is durable, so a watcher never sees a
// change that could still be lost. Watches by parent (one per IMAP folder
// and session) are indexed by it, so a commit costs the writer a lookup
// per row, not a look at every watch.
type hub struct {
	mu       sync.Mutex
	byParent map[model.Key]map[*Subscription]struct{}
	others   map[*Subscription]struct{} // by table or keys
	n        int                        // live subscriptions
	shut     bool
}

func (h *hub) addLocked(sub *Subscription) {
	h.n++
	if p := sub.filter.Parent; p != nil {
		if h.byParent == nil {
			h.byParent = map[model.Key]map[*Subscription]struct{}{}
		}
		set := h.byParent[*p]
		if set == nil {
			set = map[*Subscription]struct{}{}
			h.byParent[*p] = set
		}
		set[sub] = struct{}{}
		return
	}
	if h.others == nil {
		h.others = map[*Subscription]struct{}{}
	}
	h.others[sub] = struct{}{}
}

// Watch subscribes to changes matching f; limit is how many rows may wait
// unread before the subscription overflows.
func (s *Store) Watch(f Filter, limit int) *Subscription {
	ready := make(chan struct{}, 1)
	sub := &Subscription{Ready: ready, ready: ready, filter: f, h: &s.hub, max: max(limit, 1)}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if s.hub.shut {
		sub.closed = true
		close(ready)
		return sub
	}
	s.hub.addLocked(sub)
	return sub
}

// NumWatches returns the number of live subscriptions.
func (s *Store) NumWatches() int {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.n
}

func (h *hub) publish(rows []Row) {
	if len(rows) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range rows {
		r := &rows[i]
		if r.HasParent {
			for sub := range h.byParent[r.Parent] {
				if sub.filter.match(r) {
					h.enqueueLocked(sub, r)
				}
			}
		}
		for sub := range h.others {
			if sub.filter.match(r) {
				h.enqueueLocked(sub, r)
			}
		}
	}
}

// enqueueLocked queues a copy of r for sub and signals it, or ends sub if
// it is too far behind.
func (h *hub) enqueueLocked(sub *Subscription, r *Row) {
	if len(sub.queue) >= sub.max {
		sub.overflow = true
		h.removeLocked(sub)
		return
	}
	c := *r
	c.State = r.State.Clone()
	sub.queue = append(sub.queue, c)
	select {
	case sub.ready <- struct{}{}:
	default: // already signalled; Take gets every queued row
	}
}

func (h *hub) removeLocked(sub *Subscription) {
	if sub.closed {
		return
	}
	sub.closed = true
	close(sub.ready)
	h.n--
	if p := sub.filter.Parent; p != nil {
		set := h.byParent[*p]
		delete(set, sub)
		if len(set) == 0 {
			delete(h.byParent, *p)
		}
		return
	}
	delete(h.others, sub)
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shut = true
	for _, set := range h.byParent {
		for sub := range set {
			h.removeLocked(sub)
		}
	}
	for sub := range h.others {
		h.removeLocked(sub)
	}
}
