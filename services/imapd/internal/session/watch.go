package session

import (
	"context"
	"log/slog"
	"slices"
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
	keys   []watchKey // joined

	mu      sync.Mutex
	pending []rowChange
	lost    bool // changes were dropped: the session must list everything
	folders bool // the folder set row changed: a folder may be new
}

// watchKey names a shared dbd watch: the receive rows under a parent (a
// mailbox or a folder's APPEND home), or, with row, the one text row k
// (the account's folder set).
type watchKey struct {
	k   model.Key
	row bool
}

// maxPending bounds the changes a watcher keeps for a session that does
// not look; past it the session lists everything again.
const maxPending = 10000

// startWatch joins the watches of the account's folder set row and of
// every parent before it returns, so a listing made afterwards misses no
// change.
func startWatch(ctx context.Context, hub *watchHub, folderSet model.Key, parents []model.Key) (*watcher, error) {
	w := &watcher{notify: make(chan struct{}, 1), hub: hub}
	if err := w.join(ctx, watchKey{k: folderSet, row: true}); err != nil {
		return nil, err
	}
	if err := w.joinParents(ctx, parents); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

// joinParents joins the watches of the parents w does not follow yet.
func (w *watcher) joinParents(ctx context.Context, parents []model.Key) error {
	for _, k := range parents {
		if err := w.join(ctx, watchKey{k: k}); err != nil {
			return err
		}
	}
	return nil
}

func (w *watcher) join(ctx context.Context, wk watchKey) error {
	if slices.Contains(w.keys, wk) {
		return nil
	}
	if err := w.hub.join(ctx, wk, w); err != nil {
		return err
	}
	w.keys = append(w.keys, wk)
	return nil
}

// add keeps one changed row for the session, or, past maxPending, only
// the fact that something was lost. A change of the folder set row is
// kept as a flag (see foldersChanged).
func (w *watcher) add(wk watchKey, ch rowChange) {
	w.mu.Lock()
	if wk.row {
		w.folders = true
	} else if !w.lost && len(w.pending) < maxPending {
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
	w.lost, w.pending, w.folders = true, nil, true
	w.mu.Unlock()
	w.mark()
}

// foldersChanged reports whether the folder set row changed (or changes
// may have been missed) since the last call.
func (w *watcher) foldersChanged() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.folders
	w.folders = false
	return c
}

// refolder records again that the folder set may have changed (its
// reading failed).
func (w *watcher) refolder() {
	w.mu.Lock()
	w.folders = true
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
	for _, wk := range w.keys {
		w.hub.leave(wk, w)
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
	shared map[watchKey]*sharedWatch
}

type sharedWatch struct {
	ready   chan struct{} // closed once the watch is live, or failed (err)
	err     error         // set before ready is closed
	members map[*watcher]struct{}
	cancel  context.CancelFunc
}

func newWatchHub(ctx context.Context, st Store, retry time.Duration, log *slog.Logger, onErr func()) *watchHub {
	return &watchHub{ctx: ctx, st: st, retry: retry, log: log, onErr: onErr, shared: map[watchKey]*sharedWatch{}}
}

// join makes w a member of k's watch, opening it if there is none. When it
// returns nil the watch is live.
func (h *watchHub) join(ctx context.Context, k watchKey, w *watcher) error {
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
	ev, err := h.open(ctx, k)
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

// open opens the dbd watch k names.
func (h *watchHub) open(ctx context.Context, k watchKey) (store.Events, error) {
	if k.row {
		return h.st.WatchText(ctx, k.k)
	}
	return h.st.Watch(ctx, k.k)
}

// leave removes w from k's watch and ends the watch if w was the last.
func (h *watchHub) leave(k watchKey, w *watcher) {
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

// deliver hands a changed row of k's watch to every member of sw.
func (h *watchHub) deliver(k watchKey, sw *sharedWatch, ch rowChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range sw.members {
		w.add(k, ch)
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
func (h *watchHub) follow(ctx context.Context, k watchKey, sw *sharedWatch, ev store.Events) {
	for {
		row, err := ev.Next(ctx)
		if err == nil {
			h.deliver(k, sw, rowChange{parent: k.k, key: row.Key, rowNo: row.RowNo, state: row.State})
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
			if ev, err = h.open(ctx, k); err == nil {
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
