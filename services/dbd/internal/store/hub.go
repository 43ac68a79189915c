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
}

func (f *Filter) match(r *Row) bool {
	if r.Table != f.Table {
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
// in commit order. If the subscriber falls more than its buffer behind, the
// channel is closed and Overflowed reports true: the subscriber must read
// the current state again and resubscribe. Callers must call Close.
type Subscription struct {
	C <-chan Row

	c        chan Row
	filter   Filter
	h        *hub
	overflow bool // guarded by h.mu
	closed   bool // guarded by h.mu
}

// Overflowed reports whether the channel was closed because the subscriber
// fell behind (as opposed to Close or store shutdown).
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
}

// hub fans committed changes out to subscriptions. publish is called only
// by the writer, after the commit is durable, so a watcher never sees a
// change that could still be lost.
type hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
	shut bool
}

// Watch subscribes to changes matching f; buf is the channel's capacity.
func (s *Store) Watch(f Filter, buf int) *Subscription {
	c := make(chan Row, max(buf, 1))
	sub := &Subscription{C: c, c: c, filter: f, h: &s.hub}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if s.hub.shut {
		sub.closed = true
		close(c)
		return sub
	}
	if s.hub.subs == nil {
		s.hub.subs = make(map[*Subscription]struct{})
	}
	s.hub.subs[sub] = struct{}{}
	return sub
}

// NumWatches returns the number of live subscriptions.
func (s *Store) NumWatches() int {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return len(s.hub.subs)
}

func (h *hub) publish(rows []Row) {
	if len(rows) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		for i := range rows {
			if !sub.filter.match(&rows[i]) {
				continue
			}
			r := rows[i]
			r.State = r.State.Clone()
			select {
			case sub.c <- r:
			default:
				sub.overflow = true
				h.removeLocked(sub)
			}
			if sub.closed {
				break
			}
		}
	}
}

func (h *hub) removeLocked(sub *Subscription) {
	if sub.closed {
		return
	}
	sub.closed = true
	delete(h.subs, sub)
	close(sub.c)
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shut = true
	for sub := range h.subs {
		h.removeLocked(sub)
	}
}
