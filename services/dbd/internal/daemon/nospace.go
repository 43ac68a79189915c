package daemon

import (
	"context"
	"log/slog"
	"time"
)

// Defaults of the disk-full wait (see Config.NoSpaceWait, NoSpaceFree).
const (
	defaultNoSpaceWait = 15 * time.Minute
	spacePoll          = time.Second
)

// spaceWait is dbd's wait after its store failed for lack of space: the
// wire server keeps answering (no-space) while it runs. Its fields are
// seams for tests.
type spaceWait struct {
	dir  string // the data folder
	need uint64 // free bytes that count as space back; 0: min(room, an eighth of the file system)
	// room is what a restart needs (restartRoom); it caps the default
	// need, which an eighth of a small file system may be below.
	room  uint64
	bound time.Duration // the wait ends after this however full the disk is
	poll  time.Duration // how often free space is measured
	// free returns the bytes available to dbd and the size of the file
	// system that holds dir (diskSpace).
	free func(dir string) (avail, total uint64, err error)
	log  *slog.Logger
}

// spaceResult says why a spaceWait ended.
type spaceResult int

const (
	spaceBack    spaceResult = iota + 1 // free space reached need
	spaceTimeout                        // bound passed
	spaceStopped                        // ctx ended or the stop channel fired
)

func (r spaceResult) String() string {
	switch r {
	case spaceBack:
		return "space-back"
	case spaceTimeout:
		return "timeout"
	case spaceStopped:
		return "stopped"
	}
	return "unknown"
}

// run waits until the data folder's file system has w.need bytes free,
// w.bound has passed, ctx ends or stop fires. A failing measurement is
// logged once and the wait goes on until the bound: dbd never exits early
// on a guess, and never serves writes again before a restart.
func (w spaceWait) run(ctx context.Context, stop <-chan error) spaceResult {
	timeout := time.NewTimer(w.bound)
	defer timeout.Stop()
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	logged := false
	for {
		select {
		case <-ctx.Done():
			return spaceStopped
		case <-stop:
			return spaceStopped
		case <-timeout.C:
			return spaceTimeout
		case <-tick.C:
		}
		avail, total, err := w.free(w.dir)
		if err != nil {
			if !logged {
				w.log.Warn("cannot measure free space; waiting for the time bound", "data", w.dir, "err", err, "bound", w.bound)
				logged = true
			}
			continue
		}
		need := w.need
		if need == 0 {
			need = min(w.room, total/8)
		}
		if avail >= need {
			w.log.Info("free space is back", "data", w.dir, "free_bytes", avail, "need_bytes", need)
			return spaceBack
		}
	}
}

// restartRoom is the free space a restart needs: the WAL replayed into the
// memtable is flushed to a table (at most a memtable's bytes) while a new
// WAL starts, so twice the memtable, and 64 MiB at least (docs/dbd.md,
// Disk faults). A restart short of it fails again without acknowledging
// anything, and is tried again.
func restartRoom(memTableBytes int64) uint64 {
	return uint64(max(2*memTableBytes, 64<<20))
}
