package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// WatchDB is what the Watcher needs of a dbd client.
type WatchDB interface {
	WatchWhereFunc(ctx context.Context, t model.Table, cond wire.WatchCond, f func(*wire.Row)) (*client.Stream, error)
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
}

// Watcher follows every change of the receive table on ONE watch stream and
// hands each change to the transactions waiting for that row. One stream
// per waiting transaction would not scale: dbd bounds the streams of a
// connection (64 by default), and a busy MX has hundreds of senders waiting
// for their decision at once.
//
// A waiter registers its keys first and reads their current state second,
// so no change can fall between the two; states only rise, so merging what
// it read with what it was told is always right. When the stream breaks
// (dbd restarted, the watcher fell behind), every waiter re-reads its rows
// once the stream is back.
type Watcher struct {
	db  WatchDB
	log *slog.Logger

	mu      sync.Mutex
	waiters map[model.Key]map[*waiter]struct{}
	gen     uint64        // incremented on every (re)subscription
	live    chan struct{} // closed while subscribed; replaced on loss
}

type waiter struct {
	ch     chan *wire.Row // changes of the waiter's rows; buffered
	resync chan struct{}  // signalled when changes may have been lost
}

// NewWatcher returns a Watcher; call Run to start following.
func NewWatcher(db WatchDB, log *slog.Logger) *Watcher {
	return &Watcher{db: db, log: log, waiters: map[model.Key]map[*waiter]struct{}{}, live: make(chan struct{})}
}

// Run follows the receive table until ctx ends, resubscribing after any
// failure with a bounded backoff.
func (w *Watcher) Run(ctx context.Context) {
	var b resubscribe
	for ctx.Err() == nil {
		began := time.Now()
		err := w.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		w.lost()
		wait := b.next(time.Since(began))
		w.log.Warn("receive watch lost; resubscribing", "err", err, "backoff", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// resubscribe is the Watcher's backoff between subscriptions: doubling
// from 10 ms to 2 s while the stream keeps failing, and back to 10 ms once
// a stream has stayed up for a while. Without the reset, a watcher whose
// stream had failed a few times in its life waited the full 2 s after
// every later loss (a dbd restart weeks on), and every transaction
// waiting for its decision with it.
type resubscribe struct{ cur time.Duration }

const (
	resubscribeMin = 10 * time.Millisecond
	resubscribeMax = 2 * time.Second
	// resubscribeStable is how long a stream must have lived for its loss
	// to count as a new failure rather than one more of a series.
	resubscribeStable = 10 * time.Second
)

// next returns the wait before the next subscription, given how long the
// stream that just ended was followed.
func (b *resubscribe) next(ranFor time.Duration) time.Duration {
	if b.cur == 0 || ranFor >= resubscribeStable {
		b.cur = resubscribeMin
		return b.cur
	}
	b.cur = min(2*b.cur, resubscribeMax)
	return b.cur
}

// watchCond selects the changes a waiter can act on: rows with a
// verdict. Inserts (no verdict yet) were one of every three events of a
// mail, each encrypted by dbd, decrypted and dispatched here, and none can
// end a wait: Decide needs every recipient's verdict, and an event carries
// the row's whole state, so the backed-up mark (strict mode) comes with
// the verdict's event or a later one. Acknowledgements still come: one
// that arrives in the same commit as the verdict (a retry acknowledged at
// the other site, merged here) must end the waits for the row.
var watchCond = wire.WatchCond{With: model.ColVerdict}

// follow dispatches the events in the dbd connection's read loop
// (WatchWhereFunc; dispatch never blocks): a hand-over to this goroutine
// and on to the waiter was two goroutine wake-ups per event, two events
// a mail. An event may be dispatched before subscribed runs; waiters
// merge whatever they are told, so that is harmless.
func (w *Watcher) follow(ctx context.Context) error {
	st, err := w.db.WatchWhereFunc(ctx, model.Receive, watchCond, w.dispatch)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer st.Close()
	w.subscribed()
	for {
		row, err := st.Next(ctx)
		if err != nil {
			return fmt.Errorf("next change: %w", err)
		}
		w.dispatch(row)
	}
}

// subscribed marks the stream live and tells every waiter to re-read: it
// may have missed changes while the stream was down.
func (w *Watcher) subscribed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	select {
	case <-w.live:
	default:
		close(w.live)
	}
	for _, set := range w.waiters {
		for wt := range set {
			wt.signal()
		}
	}
}

func (w *Watcher) lost() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.live:
		w.live = make(chan struct{})
	default:
	}
}

func (w *Watcher) dispatch(row *wire.Row) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wt := range w.waiters[row.Key] {
		select {
		case wt.ch <- row:
		default:
			wt.signal() // full: the waiter re-reads its rows
		}
	}
}

func (wt *waiter) signal() {
	select {
	case wt.resync <- struct{}{}:
	default:
	}
}

func (w *Watcher) register(keys []model.Key) (*waiter, <-chan struct{}) {
	wt := &waiter{ch: make(chan *wire.Row, 4*len(keys)+4), resync: make(chan struct{}, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		set := w.waiters[k]
		if set == nil {
			set = map[*waiter]struct{}{}
			w.waiters[k] = set
		}
		set[wt] = struct{}{}
	}
	return wt, w.live
}

func (w *Watcher) unregister(wt *waiter, keys []model.Key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if set := w.waiters[k]; set != nil {
			delete(set, wt)
			if len(set) == 0 {
				delete(w.waiters, k)
			}
		}
	}
}

// Following is interest in some receive rows, registered before they are
// stored (Follow) so that no change of them can be missed.
type Following struct {
	w           *Watcher
	wt          *waiter
	keys        []model.Key
	live        <-chan struct{}
	liveAtStart bool // the stream was live when the interest was registered
}

// Follow registers interest in keys. Call it before storing the rows and
// Close it when done.
func (w *Watcher) Follow(keys []model.Key) *Following {
	wt, live := w.register(keys)
	f := &Following{w: w, wt: wt, keys: keys, live: live}
	select {
	case <-live:
		f.liveAtStart = true
	default:
	}
	return f
}

// Close ends the interest.
func (f *Following) Close() { f.w.unregister(f.wt, f.keys) }

// Wait waits until the rows are decided (see Decide) or p.Window passes
// (Undecided). fresh[i] (optional) reports that the caller's own store
// created keys[i]: with the stream live since Follow, its state was empty
// then and every later change arrives as an event, so it need not be read.
// Other rows are read once. An error means the rows could not be read
// (answer 451 4.3.0). It never polls: changes come from the shared stream,
// and rows are read again only when the stream was interrupted.
func (f *Following) Wait(ctx context.Context, fresh []bool, p Policy) (Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Window)
	defer cancel()
	// Only read once the stream is live: a change between our read and
	// the subscription would otherwise be missed.
	select {
	case <-f.live:
	case <-ctx.Done():
		return Outcome{Kind: Undecided}, nil
	}
	states := make(map[model.Key]model.State, len(f.keys))
	var toRead []model.Key
	for i, k := range f.keys {
		if f.liveAtStart && i < len(fresh) && fresh[i] {
			states[k] = model.State{}
			continue
		}
		toRead = append(toRead, k)
	}
	if err := f.w.read(ctx, toRead, states); err != nil {
		if ctx.Err() != nil {
			return Outcome{Kind: Undecided}, nil
		}
		return Outcome{}, err
	}
	for {
		if o, done := Decide(f.keys, states, p.MinCopies, sinceEpoch(p.Since)); done {
			return o, nil
		}
		select {
		case row := <-f.wt.ch:
			merge(states, row.Key, row.State)
		case <-f.wt.resync:
			if err := f.w.read(ctx, f.keys, states); err != nil {
				if ctx.Err() != nil {
					return Outcome{Kind: Undecided}, nil
				}
				return Outcome{}, err
			}
		case <-ctx.Done():
			return Outcome{Kind: Undecided}, nil
		}
	}
}

// Wait follows keys and waits for their decision, reading every row: for
// rows the caller did not just create.
func (w *Watcher) Wait(ctx context.Context, keys []model.Key, p Policy) (Outcome, error) {
	f := w.Follow(keys)
	defer f.Close()
	return f.Wait(ctx, nil, p)
}

// read merges the current state of every row into states.
func (w *Watcher) read(ctx context.Context, keys []model.Key, states map[model.Key]model.State) error {
	for _, k := range keys {
		row, err := w.db.FindKey(ctx, model.Receive, k)
		if errors.Is(err, client.ErrNotFound) {
			continue // not yet visible: its insert will come as a change
		}
		if err != nil {
			return fmt.Errorf("read receive row %s: %w", k, err)
		}
		merge(states, k, row.State)
	}
	return nil
}

func merge(states map[model.Key]model.State, k model.Key, s model.State) {
	cur := states[k]
	states[k] = model.Merge(cur, s)
}

// sinceEpoch is the verdict epoch of an attempt received at t; the zero
// time accepts a Retry of any epoch.
func sinceEpoch(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	return model.Epoch(t)
}
