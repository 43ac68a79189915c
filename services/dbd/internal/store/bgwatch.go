package store

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// bgLogEvery bounds the log lines of a run of background errors.
const bgLogEvery = 10 * time.Second

// bgWatch follows Pebble's background errors: flushes and compactions that
// failed. Pebble retries them at once, so a disk that keeps refusing
// sstable writes gives hundreds of errors a second forever; once the
// memtables are full every write waits behind them and no caller is ever
// answered. bgWatch logs the first error of a run and then one line with
// the count every bgLogEvery, and when errors go on for failAfter with no
// flush succeeding it ends the process (as Pebble's own fatal errors do):
// the supervisor restarts dbd, which recovers from its WAL, and a disk
// that works again is used again. Nothing acknowledged is lost that way:
// an answer waits for the WAL sync, not for a flush.
type bgWatch struct {
	log       *slog.Logger
	failAfter time.Duration // <0: never
	now       func() time.Time
	exit      func(msg string)

	mu      sync.Mutex
	first   time.Time // first error of the current run; zero: no run
	last    time.Time // latest error of the current run
	lastLog time.Time
	errors  int // in the current run
	logged  int // errors of the run already reported
}

// exitFatal is bgWatch's default exit: the same as pebbleLogger.Fatalf.
func exitFatal(msg string) {
	slog.Error(msg) // in case the store's logger is not the default one
	os.Exit(2)
}

func (w *bgWatch) onError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	// A failing disk makes Pebble retry at once, hundreds of errors a
	// second. An error failAfter or more after the one before is no part
	// of such a run but a one-off (Pebble also reports table stats it
	// could not load, a statfs that failed), and a store taking few writes
	// may go hours without the flush that would end the run: it starts a
	// new run instead of ending the process.
	if !w.first.IsZero() && w.failAfter >= 0 && now.Sub(w.last) >= w.failAfter {
		w.first = time.Time{}
	}
	if w.first.IsZero() {
		w.first, w.errors, w.logged = now, 0, 0
		w.lastLog = time.Time{}
	}
	w.errors++
	w.last = now
	if now.Sub(w.lastLog) >= bgLogEvery {
		w.log.Error("pebble: background error: "+err.Error(), "errors_in_run", w.errors, "since", w.first)
		w.lastLog, w.logged = now, w.errors
	}
	if w.failAfter >= 0 && now.Sub(w.first) >= w.failAfter {
		msg := fmt.Sprintf("pebble: background writes failing for %v (%d errors, last: %v); exiting so that a restart recovers from the WAL", now.Sub(w.first).Round(time.Second), w.errors, err)
		w.log.Error(msg)
		w.exit(msg)
	}
}

// onFlushEnd ends a run of errors when a flush succeeds: the disk takes
// writes again.
func (w *bgWatch) onFlushEnd(info pebble.FlushInfo) {
	if !info.Done || info.Err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.first.IsZero() {
		if w.errors > w.logged {
			w.log.Info("pebble: a flush succeeded after background errors", "errors_in_run", w.errors, "since", w.first)
		}
		w.first = time.Time{}
	}
}
