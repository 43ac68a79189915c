package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestCheckpointWhileWriting takes a checkpoint while writers keep going,
// then opens it as a store of its own: every write acknowledged before the
// checkpoint began must be in it, with its state.
func TestCheckpointWhileWriting(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	defer s.Close()

	var acked atomic.Int64 // writers' acknowledged inserts, in order per writer
	const writers = 4
	done := make(chan struct{})
	var wg sync.WaitGroup
	ackedBy := make([][]string, writers)
	var mu sync.Mutex
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				c := fmt.Sprintf("w%d-%d", w, i)
				m := ins(model.Body, c)
				if _, err := s.Apply(ctx, []Mutation{m, {Kind: Set, Table: model.Body, Key: m.Key, Name: "ack", Value: 1}}); err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
				mu.Lock()
				ackedBy[w] = append(ackedBy[w], c)
				mu.Unlock()
				acked.Add(1)
			}
		}()
	}
	for acked.Load() < 200 {
		if _, err := s.Apply(ctx, []Mutation{ins(model.Text, "pace")}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	before := make([]string, 0, acked.Load())
	for _, l := range ackedBy {
		before = append(before, l...)
	}
	mu.Unlock()
	path, err := s.Checkpoint("cp1")
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	// Counted after the checkpoint returned (writers went on during it, so
	// counting from before would not prove any write came after it).
	afterCP := acked.Load()
	for acked.Load() < afterCP+200 {
		if _, err := s.Apply(ctx, []Mutation{ins(model.Text, "pace")}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if want := filepath.Join("db", CheckpointDir, "cp1"); path != want {
		t.Fatalf("Checkpoint path = %q, want %q", path, want)
	}
	if _, err := s.Checkpoint("cp1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Checkpoint of an existing name: %v, want ErrInvalid", err)
	}
	for _, bad := range []string{"..", ".", "a/b", "", "/abs"} {
		if _, err := s.Checkpoint(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Checkpoint(%q) = %v, want ErrInvalid", bad, err)
		}
	}

	cp, err := Open(Options{Dir: path, FS: fs, Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open checkpoint: %v", err)
	}
	defer cp.Close()
	v := mustView(t, cp)
	defer v.Close()
	for _, c := range before {
		row, ok, err := v.Find(model.Body, model.KeyOf(model.Body, []byte(c)))
		if err != nil || !ok {
			t.Fatalf("checkpoint lacks %q, acknowledged before it (found %v, %v)", c, ok, err)
		}
		if row.State.Col("ack") != 1 {
			t.Fatalf("checkpoint row %q has state %+v, want ack=1", c, row.State)
		}
	}
	if n, total := cp.Count(model.Body), s.Count(model.Body); n < uint64(len(before)) || n >= total {
		t.Fatalf("checkpoint holds %d body rows; want between %d (before) and %d (now, after more writes)", n, len(before), total)
	}
}
