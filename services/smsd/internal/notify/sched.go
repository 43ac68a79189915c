package notify

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
)

// scheduler hands receive rows to the workers when they are due: at once
// after a change (poke), or at the time a look asked for (finish). A row
// is with at most one worker at a time; a poke while it is there makes it
// due again as soon as the worker is done.
type scheduler struct {
	now     func() time.Time
	pending prometheus.Gauge
	wake    chan struct{}

	mu    sync.Mutex
	due   map[model.Key]time.Time
	busy  map[model.Key]bool
	dirty map[model.Key]bool
}

func newScheduler(now func() time.Time, pending prometheus.Gauge) *scheduler {
	return &scheduler{now: now, pending: pending, wake: make(chan struct{}, 1),
		due: map[model.Key]time.Time{}, busy: map[model.Key]bool{}, dirty: map[model.Key]bool{}}
}

func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) gaugeLocked() { s.pending.Set(float64(len(s.due) + len(s.busy))) }

// poke makes k due now.
func (s *scheduler) poke(k model.Key) {
	s.mu.Lock()
	if s.busy[k] {
		s.dirty[k] = true
	} else {
		s.due[k] = s.now()
	}
	s.gaugeLocked()
	s.mu.Unlock()
	s.signal()
}

// finish returns k from a worker: due at next if again, or at once if it
// was poked meanwhile.
func (s *scheduler) finish(k model.Key, next time.Time, again bool) {
	s.mu.Lock()
	delete(s.busy, k)
	switch {
	case s.dirty[k]:
		delete(s.dirty, k)
		s.due[k] = s.now()
	case again:
		s.due[k] = next
	}
	s.gaugeLocked()
	s.mu.Unlock()
	s.signal()
}

// maxSleep bounds the scheduler's sleep (the clock may jump).
const maxSleep = time.Second

// run hands due rows to work until ctx ends.
func (s *scheduler) run(ctx context.Context, work chan<- model.Key) {
	for {
		s.mu.Lock()
		now := s.now()
		var ready []model.Key
		next := now.Add(maxSleep)
		for k, at := range s.due {
			if !at.After(now) {
				ready = append(ready, k)
				delete(s.due, k)
				s.busy[k] = true
			} else if at.Before(next) {
				next = at
			}
		}
		s.mu.Unlock()
		for _, k := range ready {
			select {
			case work <- k:
			case <-ctx.Done():
				return
			}
		}
		if len(ready) > 0 {
			continue
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
