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

// watcher follows the receive rows of an account's mailboxes through dbd
// watches (by parent) and marks the view dirty on every change. It owns
// one goroutine per mailbox; stop ends them and waits.
type watcher struct {
	dirty  atomic.Bool
	notify chan struct{} // capacity 1: "something changed since the last look"
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWatch subscribes to every mailbox before it returns, so a listing
// made afterwards misses no change.
func startWatch(ctx context.Context, st Store, boxes []model.Key, retry time.Duration, log *slog.Logger, onErr func()) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{notify: make(chan struct{}, 1), cancel: cancel}
	for _, box := range boxes {
		ev, err := st.Watch(ctx, box)
		if err != nil {
			w.stop()
			return nil, err
		}
		w.wg.Add(1)
		go w.follow(ctx, st, box, ev, retry, log, onErr)
	}
	return w, nil
}

func (w *watcher) mark() {
	w.dirty.Store(true)
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) follow(ctx context.Context, st Store, box model.Key, ev store.Events, retry time.Duration, log *slog.Logger, onErr func()) {
	defer w.wg.Done()
	for {
		_, err := ev.Next(ctx)
		if err == nil {
			w.mark()
			continue
		}
		ev.Close()
		if ctx.Err() != nil {
			return
		}
		// The watch broke (dbd restarted, or we fell behind): read
		// everything again and subscribe again.
		log.Warn("mailbox watch broke; resubscribing", "err", err)
		onErr()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			if ev, err = st.Watch(ctx, box); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
		w.mark()
	}
}

// stop ends the watches and waits for their goroutines.
func (w *watcher) stop() {
	w.cancel()
	w.wg.Wait()
}
