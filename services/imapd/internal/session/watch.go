package session

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// watcher is one selected session's interest in the receive rows of its
// account's mailboxes and folders: marked dirty on every change, and
// keeping the changed rows until the session takes them. The dbd watches
// behind it are shared with the account's other sessions (see watchHub);
// stop leaves them.
type watcher struct {
	dirty  atomic.Bool
	notify chan struct{} // capacity 1: "something changed since the last look"
	hub    *watchHub
	keys   []model.Key // joined

	mu      sync.Mutex
	pending []rowChange
	lost    bool // changes were dropped: the session must list everything
}

// maxPending bounds the changes a watcher keeps for a session that does
// not look; past it the session lists everything again.
const maxPending = 10000

// startWatch joins the watches of every key before it returns, so a
// listing made afterwards misses no change.
func startWatch(ctx context.Context, hub *watchHub, keys []model.Key) (*watcher, error) {
	w := &watcher{notify: make(chan struct{}, 1), hub: hub}
	for _, k := range keys {
		if err := hub.join(ctx, k, w); err != nil {
			w.stop()
			return nil, err
		}
		w.keys = append(w.keys, k)
	}
	return w, nil
}

// add keeps one changed row for the session, or, past maxPending, only
// the fact that something was lost.
func (w *watcher) add(ch rowChange) {
	w.mu.Lock()
	if !w.lost && len(w.pending) < maxPending {
		w.pending = append(w.pending, ch)
	} else {
		w.lost, w.pending = true, nil
	}
	w.mu.Unlock()
	w.mark()
}

// loseAll records that changes may have been missed (a watch broke).
func (w *watcher) loseAll() {
	w.mu.Lock()
	w.lost, w.pending = true, nil
	w.mu.Unlock()
	w.mark()
}

// take returns the changes kept since the last take, and whether they are
// all the changes there were.
func (w *watcher) take() (changes []rowChange, complete bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changes, complete = w.pending, !w.lost
	w.pending, w.lost = nil, false
	return changes, complete
}

func (w *watcher) mark() {
	w.dirty.Store(true)
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// stop leaves the watches.
func (w *watcher) stop() {
	for _, k := range w.keys {
		w.hub.leave(k, w)
	}
	w.keys = nil
}

// watchHub shares one dbd watch per mailbox or folder key among the
// sessions that follow it: a mail client keeps several connections to one
// account, and each selected session follows all the account's folders,
// so per-session watches would multiply dbd's streams by that. A watch
// ends when its last session leaves.
type watchHub struct {
	ctx   context.Context // the server's: watches end with it
	st    Store
	retry time.Duration // pause before a broken watch is opened again
	log   *slog.Logger
	onErr func() // counts a broken watch

	mu     sync.Mutex
	shared map[model.Key]*sharedWatch
}

type sharedWatch struct {
	ready   chan struct{} // closed once the watch is live, or failed (err)
	err     error         // set before ready is closed
	members map[*watcher]struct{}
	cancel  context.CancelFunc
}

func newWatchHub(ctx context.Context, st Store, retry time.Duration, log *slog.Logger, onErr func()) *watchHub {
	return &watchHub{ctx: ctx, st: st, retry: retry, log: log, onErr: onErr, shared: map[model.Key]*sharedWatch{}}
}

// join makes w a member of k's watch, opening it if there is none. When it
// returns nil the watch is live.
func (h *watchHub) join(ctx context.Context, k model.Key, w *watcher) error {
	h.mu.Lock()
	if sw := h.shared[k]; sw != nil {
		sw.members[w] = struct{}{}
		h.mu.Unlock()
		select {
		case <-sw.ready:
			return sw.err // on an error sw is gone from the hub: nothing to leave
		case <-ctx.Done():
			h.leave(k, w)
			return ctx.Err()
		}
	}
	wctx, cancel := context.WithCancel(h.ctx)
	sw := &sharedWatch{ready: make(chan struct{}), members: map[*watcher]struct{}{w: {}}, cancel: cancel}
	h.shared[k] = sw
	h.mu.Unlock()
	// Opened outside the lock: other keys' sessions need not wait.
	ev, err := h.st.Watch(ctx, k)
	if err != nil {
		h.mu.Lock()
		if h.shared[k] == sw {
			delete(h.shared, k)
		}
		h.mu.Unlock()
		cancel()
		sw.err = err
		close(sw.ready)
		return err
	}
	close(sw.ready)
	go h.follow(wctx, k, sw, ev)
	return nil
}

// leave removes w from k's watch and ends the watch if w was the last.
func (h *watchHub) leave(k model.Key, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.shared[k]
	if sw == nil {
		return
	}
	delete(sw.members, w)
	if len(sw.members) == 0 {
		delete(h.shared, k)
		sw.cancel()
	}
}

// deliver hands a changed row to every member of sw.
func (h *watchHub) deliver(sw *sharedWatch, ch rowChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range sw.members {
		w.add(ch)
	}
}

// loseAll tells every member of sw that changes may have been missed.
func (h *watchHub) loseAll(sw *sharedWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range sw.members {
		w.loseAll()
	}
}

// follow hands each changed row to sw's members until ctx ends. A broken
// watch (dbd restarted, or the watch fell behind) is opened again, and
// then the members are told to list everything again.
func (h *watchHub) follow(ctx context.Context, k model.Key, sw *sharedWatch, ev store.Events) {
	for {
		row, err := ev.Next(ctx)
		if err == nil {
			h.deliver(sw, rowChange{parent: k, key: row.Key, rowNo: row.RowNo, state: row.State})
			continue
		}
		ev.Close()
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("mailbox watch broke; resubscribing", "err", err)
		h.onErr()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.retry):
			}
			if ev, err = h.st.Watch(ctx, k); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
		h.loseAll(sw)
	}
}

// watches returns how many dbd watches are open (tests).
func (h *watchHub) watches() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.shared)
}
