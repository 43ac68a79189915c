package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestStampsOfARunStartAboveItsOpen: the stamps of each run start above the
// time the store was opened, so a copy of the store restored after it made
// more changes, or an empty store in its place, never gives a stamp again
// that the original already gave (a replicator's cursor may hold it).
func TestStampsOfARunStartAboveItsOpen(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	clock := time.Unix(1_800_000_000, 0)
	open := func(dir string) *Store { return openDir(t, fs, dir, func() time.Time { return clock }) }
	write := func(s *Store, prefix string, n int) {
		t.Helper()
		for i := range n {
			if _, err := s.Apply(ctx, []Mutation{ins(model.Text, fmt.Sprintf("%s %d", prefix, i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	floor := uint64(clock.UnixMicro())

	s := open("db")
	if b, f := s.StampRun(); b != 0 || f != floor {
		t.Fatalf("new store: StampRun = %d, %d; want 0, %d", b, f, floor)
	}
	write(s, "first", 5)
	if got := s.LastStamp(); got != floor+5 {
		t.Fatalf("after 5 changes: last stamp %d, want %d", got, floor+5)
	}
	if _, err := s.Checkpoint("cp"); err != nil {
		t.Fatal(err)
	}
	write(s, "after the checkpoint", 5)
	original := s.LastStamp()
	s.Close()

	// The checkpoint restored a second later: its last stamp is the one
	// at the checkpoint, and its next change must come after original.
	clock = clock.Add(time.Second)
	r := open("db/checkpoints/cp")
	if b, _ := r.StampRun(); b != floor+5 {
		t.Fatalf("restored copy: last stamp on disk %d, want %d", b, floor+5)
	}
	write(r, "after the restore", 1)
	if got := r.LastStamp(); got <= original {
		t.Fatalf("restored copy's first change got stamp %d, not above the original's %d", got, original)
	}
	r.Close()

	// An empty store (a rebuilt site) also starts above the original.
	e := open("rebuilt")
	write(e, "rebuilt", 1)
	if got := e.LastStamp(); got <= original {
		t.Fatalf("rebuilt store's first change got stamp %d, not above the original's %d", got, original)
	}
	e.Close()

	// A clock set back does not take the stamps back: they go on from the
	// last one.
	clock = clock.Add(-time.Hour)
	s = open("db")
	defer s.Close()
	write(s, "clock set back", 1)
	if got := s.LastStamp(); got != original+1 {
		t.Fatalf("clock set back: stamp %d, want %d", got, original+1)
	}
}

// TestCheckpointCopyGetsNewIncarnation: a store opened from a checkpoint
// gets a new incarnation, once, because it may number rows again that the
// original numbered after the checkpoint (IMAP UIDs); the original keeps
// its own.
func TestCheckpointCopyGetsNewIncarnation(t *testing.T) {
	fs := vfs.NewMem()
	open := func(dir string) *Store { return openDir(t, fs, dir, nil) }
	s := open("db")
	orig := s.Incarnation()
	path, err := s.Checkpoint("cp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(fs.PathJoin(path, copyMark)); err != nil {
		t.Fatalf("checkpoint without its mark: %v", err)
	}
	s.Close()
	s = open("db")
	if got := s.Incarnation(); got != orig {
		t.Fatalf("original reopened: incarnation %d, want %d", got, orig)
	}
	s.Close()

	c := open(path)
	restored := c.Incarnation()
	if restored == orig {
		t.Fatalf("copy opened from a checkpoint kept the incarnation %d", orig)
	}
	if _, err := fs.Stat(fs.PathJoin(path, copyMark)); err == nil {
		t.Fatal("the mark is still there after the copy was opened")
	}
	c.Close()
	c = open(path)
	defer c.Close()
	if got := c.Incarnation(); got != restored {
		t.Fatalf("copy reopened: incarnation %d, want %d (drawn once)", got, restored)
	}
}

// openDir opens the store in dir of fs with the clock now (nil: time.Now).
func openDir(t *testing.T, fs vfs.FS, dir string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, FS: fs, Site: "a", Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Open %s: %v", dir, err)
	}
	return s
}
