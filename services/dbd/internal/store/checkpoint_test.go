package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// TestRestoredCountsInFreshSlot plays a site restored from a checkpoint:
// the live store counts on after the checkpoint, the restored copy counts
// too, and then the live store's row is merged into the copy (what
// backupd does once the site is back). Every increment must survive: the
// copy counts in a slot of its own, so the live store's higher count of
// the old slot cannot swallow the copy's increments in the merge.
func TestRestoredCountsInFreshSlot(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	defer s.Close()
	row := ins(model.Receive, "r")
	add := func(s *Store, n uint64) {
		t.Helper()
		if _, err := s.Apply(ctx, []Mutation{{Kind: Add, Table: row.Table, Key: row.Key, Name: "hits", Value: n}}); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	state := func(s *Store) model.State {
		t.Helper()
		v := mustView(t, s)
		defer v.Close()
		r, ok, err := v.Find(row.Table, row.Key)
		if err != nil || !ok {
			t.Fatalf("Find: %v, %v", ok, err)
		}
		return r.State
	}
	if _, err := s.Apply(ctx, []Mutation{row}); err != nil {
		t.Fatal(err)
	}
	add(s, 5)
	path, err := s.Checkpoint("before")
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	add(s, 4) // 9 at the live store

	cp, err := Open(Options{Dir: path, FS: fs, Site: "a", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open checkpoint: %v", err)
	}
	defer cp.Close()
	if cp.CounterSlot() == s.CounterSlot() {
		t.Fatalf("restored store counts in the live store's slot %q", s.CounterSlot())
	}
	add(cp, 2) // 5 + 2 at the restored copy
	if _, err := cp.Merge(ctx, []MergeRow{{Table: row.Table, Key: row.Key, Content: row.Content, State: state(s)}}, "", 0); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if got := state(cp).Counter("hits"); got != 11 {
		t.Fatalf("restored store counts %d hits after the merge (%v), want 5 + 4 + 2 = 11", got, state(cp).Counters)
	}
}

// TestSiteNameLeavesRoomForSlot: the counter slot adds the incarnation to
// the site name, so a site name must leave room for it.
func TestSiteNameLeavesRoomForSlot(t *testing.T) {
	max := model.MaxNameLen - len(counterSlot("", 0))
	for _, c := range []struct {
		site string
		ok   bool
	}{{"a", true}, {strings.Repeat("s", max), true}, {strings.Repeat("s", max+1), false}, {"", false}, {"A", false}} {
		o := Options{Dir: "db", Site: c.site}
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("site %q (%d bytes): Validate = %v, want ok %v", c.site, len(c.site), err, c.ok)
		}
	}
}

// TestCheckpointWithoutMarkLeavesNothing: when the copy's mark cannot be
// written (a full disk: the tables are hard links and need no space, the
// mark does), Checkpoint fails and removes the copy. Left behind, the
// folder was a complete store without the mark: restored, it kept the
// original's incarnation and gave again the row numbers (IMAP UIDs) the
// original handed out after it; and a retry under the same name was
// refused as existing.
func TestCheckpointWithoutMarkLeavesNothing(t *testing.T) {
	ctx := context.Background()
	ffs := newFaultFS(vfs.NewMem())
	s := openTest(t, ffs)
	defer s.Close()
	if _, err := s.Apply(ctx, []Mutation{ins(model.Text, "before the checkpoint")}); err != nil {
		t.Fatal(err)
	}
	ffs.set(func(op fsOp, path string) fsFault {
		if op == fsCreate && strings.HasSuffix(path, copyMark) {
			return fsFault{Err: syscall.ENOSPC}
		}
		return fsFault{}
	})
	dir := filepath.Join("db", CheckpointDir, "cp")
	if _, err := s.Checkpoint("cp"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Checkpoint with the mark failing = %v, want ENOSPC", err)
	}
	if _, err := ffs.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a failed checkpoint, %s: Stat = %v, want it gone", dir, err)
	}
	ffs.set(nil)
	path, err := s.Checkpoint("cp")
	if err != nil {
		t.Fatalf("Checkpoint again under the same name: %v", err)
	}
	if _, err := ffs.Stat(ffs.PathJoin(path, copyMark)); err != nil {
		t.Fatalf("checkpoint without its mark: %v", err)
	}
}
