package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestSpaceWait: after a disk-full failure dbd waits until the free space
// reaches the threshold (by default the smaller of 64 MiB and an eighth
// of the file system), or the bound passes, or it is stopped; a free
// space it cannot measure never ends the wait early.
func TestSpaceWait(t *testing.T) {
	const mib = 1 << 20
	errStatfs := errors.New("statfs: broken")
	tests := []struct {
		name  string
		need  uint64
		total uint64
		free  []uint64 // successive measurements; the last repeats
		err   error
		bound time.Duration
		want  spaceResult
		polls int64 // measurements taken, at least
	}{
		{"space back, default of a big disk", 0, 1 << 40, []uint64{0, 10 * mib, 128*mib - 1, 128 * mib}, nil, 5 * time.Second, spaceBack, 4},
		{"space back, default of a small disk", 0, 48 * mib, []uint64{0, 5 * mib, 6 * mib}, nil, 5 * time.Second, spaceBack, 3},
		{"still full", 0, 48 * mib, []uint64{0, 6*mib - 1}, nil, 50 * time.Millisecond, spaceTimeout, 2},
		{"configured threshold", 100, 1 << 40, []uint64{99, 100}, nil, 5 * time.Second, spaceBack, 2},
		{"cannot measure", 0, 0, nil, errStatfs, 50 * time.Millisecond, spaceTimeout, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var polls atomic.Int64
			w := spaceWait{dir: "/data", need: tt.need, room: restartRoom(64 * mib), bound: tt.bound, poll: time.Millisecond,
				log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				free: func(dir string) (uint64, uint64, error) {
					i := int(polls.Add(1)) - 1
					if tt.err != nil {
						return 0, 0, tt.err
					}
					return tt.free[min(i, len(tt.free)-1)], tt.total, nil
				}}
			if got := w.run(context.Background(), nil); got != tt.want {
				t.Fatalf("run = %s after %d measurements, want %s", got, polls.Load(), tt.want)
			}
			if polls.Load() < tt.polls {
				t.Errorf("run took %d measurements, want at least %d", polls.Load(), tt.polls)
			}
			if tt.want == spaceBack && polls.Load() != int64(len(tt.free)) {
				t.Errorf("run ended after %d measurements, want %d (the first with enough space)", polls.Load(), len(tt.free))
			}
		})
	}

	full := func(string) (uint64, uint64, error) { return 0, 1 << 40, nil }
	w := spaceWait{dir: "/data", bound: time.Hour, poll: time.Millisecond, free: full, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := w.run(ctx, nil); got != spaceStopped {
		t.Errorf("run with an ended ctx = %s, want stopped", got)
	}
	stop := make(chan error, 1)
	stop <- errors.New("listener closed")
	if got := w.run(context.Background(), stop); got != spaceStopped {
		t.Errorf("run after the server ended = %s, want stopped", got)
	}
}

// TestDiskSpace: the data folder's file system reports a size and free
// space no larger than it.
func TestDiskSpace(t *testing.T) {
	avail, total, err := diskSpace(t.TempDir())
	if err != nil {
		t.Skipf("diskSpace: %v", err)
	}
	if total == 0 || avail > total {
		t.Errorf("diskSpace = %d free of %d", avail, total)
	}
}

// TestRestartRoom: a restart needs room to flush a whole memtable while a
// new WAL starts.
func TestRestartRoom(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		memTable int64
		want     uint64
	}{{mib, 64 * mib}, {64 * mib, 128 * mib}, {512 * mib, 1024 * mib}} {
		if got := restartRoom(tt.memTable); got != tt.want {
			t.Errorf("restartRoom(%d MiB) = %d MiB, want %d MiB", tt.memTable/mib, got/mib, tt.want/mib)
		}
	}
}
