package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestWALSyncFailureStopsAcks: when the WAL fsync fails, the write is not
// acknowledged, the store fails for good and refuses reads and writes from
// then on (fsyncgate: never retry-and-ack). TEST-CATALOG 81.
func TestWALSyncFailureStopsAcks(t *testing.T) {
	var armed atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		sync := op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
		if armed.Load() && sync && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, err := Open(Options{Dir: "db", FS: fs, Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Apply(ctx, []Mutation{ins(model.Body, "before")}); err != nil {
		t.Fatalf("write before the fault: %v", err)
	}
	armed.Store(true)
	if res, err := s.Apply(ctx, []Mutation{ins(model.Body, "during")}); err == nil {
		t.Fatalf("a write whose fsync failed was acknowledged: %+v", res)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("store did not fail after a WAL sync error")
	}
	armed.Store(false) // even if the disk recovers, nothing more is acknowledged
	if _, err := s.Apply(ctx, []Mutation{ins(model.Body, "after")}); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after the failure: %v, want ErrFailed", err)
	}
	if _, err := s.View(); !errors.Is(err, ErrFailed) {
		t.Fatalf("read after the failure: %v, want ErrFailed", err)
	}
}
