package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// watchFake is a Store whose watches are channels the test feeds; every
// other method is unused.
type watchFake struct {
	Store
	mu     sync.Mutex
	opened map[model.Key]int
	open   map[model.Key][]*fakeEvents
	fail   bool
}

type fakeEvents struct {
	ch     chan error // nil: an event; else the stream breaks with it
	closed chan struct{}
	once   sync.Once
}

func (e *fakeEvents) Next(ctx context.Context) (*wire.Row, error) {
	select {
	case err := <-e.ch:
		if err != nil {
			return nil, err
		}
		return &wire.Row{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *fakeEvents) Close() { e.once.Do(func() { close(e.closed) }) }

func (f *watchFake) Watch(ctx context.Context, k model.Key) (store.Events, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("dbd down")
	}
	e := &fakeEvents{ch: make(chan error), closed: make(chan struct{})}
	f.opened[k]++
	f.open[k] = append(f.open[k], e)
	return e, nil
}

// WatchText watches the folder set row like a parent (keys differ).
func (f *watchFake) WatchText(ctx context.Context, k model.Key) (store.Events, error) {
	return f.Watch(ctx, k)
}

func (f *watchFake) last(k model.Key) *fakeEvents {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.open[k]
	return l[len(l)-1]
}

func waitMarked(t *testing.T, w *watcher) {
	t.Helper()
	select {
	case <-w.notify:
		if !w.dirty.Swap(false) {
			t.Fatal("notified but not dirty")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not marked within 10 s")
	}
}

// TestWatchesShared: sessions of one account share one watch per key; an
// event marks them all; the watch closes when the last one leaves; a
// broken watch is opened again and marks everyone.
func TestWatchesShared(t *testing.T) {
	f := &watchFake{opened: map[model.Key]int{}, open: map[model.Key][]*fakeEvents{}}
	errs := 0
	hub := newWatchHub(context.Background(), f, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { errs++ })
	a, b, set := model.Key{1}, model.Key{2}, model.Key{3}
	ctx := context.Background()
	w1, err := startWatch(ctx, hub, set, []model.Key{a, b})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := startWatch(ctx, hub, set, []model.Key{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if f.opened[a] != 1 || f.opened[b] != 1 || f.opened[set] != 1 || hub.watches() != 3 {
		t.Fatalf("two sessions opened %d, %d and %d watches (%d live), want one each", f.opened[a], f.opened[b], f.opened[set], hub.watches())
	}
	f.last(b).ch <- nil
	waitMarked(t, w1)
	waitMarked(t, w2)

	ea := f.last(a)
	ea.ch <- errors.New("fell behind")
	waitMarked(t, w1) // after the watch was opened again
	waitMarked(t, w2)
	if f.opened[a] != 2 || errs != 1 {
		t.Fatalf("after a break: %d opens of a, %d errors counted; want 2 and 1", f.opened[a], errs)
	}

	w1.stop()
	f.last(a).ch <- nil
	waitMarked(t, w2)
	if hub.watches() != 3 {
		t.Fatalf("%d watches after one of two sessions left, want 3", hub.watches())
	}
	w2.stop()
	if hub.watches() != 0 {
		t.Fatalf("%d watches after every session left", hub.watches())
	}
	select {
	case <-f.last(b).closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the last session left but the dbd watch stayed open")
	}

	// A watch that cannot be opened fails the join and leaves nothing.
	f.fail = true
	if _, err := startWatch(ctx, hub, set, []model.Key{a}); err == nil {
		t.Fatal("startWatch succeeded with dbd down")
	}
	if hub.watches() != 0 {
		t.Fatalf("%d watches after a failed start", hub.watches())
	}
}
