package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestNewRowLookupsUseL6Filters: with every row compacted into the bottom
// level, inserting new rows must consult that level's bloom filters
// instead of reading its data blocks (see probe); pebble.DB.Get would not
// use them at all, and the filter hits would stay at zero. With a block
// cache too small to hold the filters, the probe must leave them out.
// Views reading the new rows back use the filters the same way.
func TestNewRowLookupsUseL6Filters(t *testing.T) {
	const fresh = 200
	for _, tc := range []struct {
		name       string
		cache      int64 // 0: the default
		wantHits   int64 // at least
		wantAtMost int64
	}{
		{"filters fit", 0, fresh * 9 / 10, 1 << 62},
		// 2000 rows of 5 filter bytes: over half of 16 KiB.
		{"filters too big for the cache", 16 << 10, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Site: "a", CacheSize: tc.cache,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var muts []Mutation
			for i := range 2000 {
				muts = append(muts, ins(model.Body, fmt.Sprintf("old row %d", i)))
			}
			if _, err := s.Apply(ctx, muts); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
				t.Fatal(err)
			}
			m := s.db.Metrics()
			for l := 0; l < 6; l++ {
				if n := m.Levels[l].TablesCount; n != 0 {
					t.Fatalf("L%d holds %d tables after the full compaction, want all in L6", l, n)
				}
			}
			before := m.Filter.Hits
			for i := range fresh {
				res, err := s.Apply(ctx, []Mutation{ins(model.Body, fmt.Sprintf("new row %d", i))})
				if err != nil {
					t.Fatal(err)
				}
				if !res[0].New {
					t.Fatalf("new row %d found as existing", i)
				}
			}
			// Each new row is looked up once; a few may pass the filter
			// falsely (about 1 %).
			hits := s.db.Metrics().Filter.Hits - before
			if hits < tc.wantHits || hits > tc.wantAtMost {
				t.Errorf("L6 filter hits while inserting %d new rows: %d, want %d to %d", fresh, hits, tc.wantHits, tc.wantAtMost)
			}
			if got, want := s.L6Filters(), tc.wantHits > 0; got != want {
				t.Errorf("L6Filters() = %v, want %v", got, want)
			}
			// Reading the new rows back: a view's prefix seek positions
			// every level, so without the filters each row found above L6
			// also reads an L6 data block.
			v, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			before = s.db.Metrics().Filter.Hits
			for i := range fresh {
				if _, ok, err := v.Find(model.Body, model.KeyOf(model.Body, []byte(fmt.Sprintf("new row %d", i)))); err != nil || !ok {
					t.Fatalf("view: new row %d: found %v, %v", i, ok, err)
				}
			}
			if _, ok, err := v.Find(model.Body, model.KeyOf(model.Body, []byte("old row 7"))); err != nil || !ok {
				t.Fatalf("view: a row in L6: found %v, %v", ok, err)
			}
			v.Close()
			if hits := s.db.Metrics().Filter.Hits - before; hits < tc.wantHits || hits > tc.wantAtMost {
				t.Errorf("L6 filter hits while reading %d new rows: %d, want %d to %d", fresh, hits, tc.wantHits, tc.wantAtMost)
			}
			// The old rows are still found, through the same path.
			res, err := s.Apply(ctx, []Mutation{ins(model.Body, "old row 7")})
			if err != nil {
				t.Fatal(err)
			}
			if res[0].New {
				t.Error("a row compacted into L6 was not found")
			}
		})
	}
}

// TestMemTableSize: the memtable holds what Options.MemTableSize says:
// 3 MiB of rows stay in a 64 MiB memtable, and a 1 MiB one flushes them
// to tables.
func TestMemTableSize(t *testing.T) {
	for _, tc := range []struct {
		size      int64
		wantFlush bool
	}{{1 << 20, true}, {64 << 20, false}} {
		s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Site: "a", MemTableSize: tc.size,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		pad := string(make([]byte, 1000))
		for b := range 30 {
			var muts []Mutation
			for i := range 100 {
				muts = append(muts, ins(model.Body, fmt.Sprintf("row %d %d %s", b, i, pad)))
			}
			if _, err := s.Apply(context.Background(), muts); err != nil {
				t.Fatal(err)
			}
		}
		if flushed := s.db.Metrics().Flush.Count > 0; flushed != tc.wantFlush {
			t.Errorf("memtable of %d bytes: flushed %v after 3 MiB of rows, want %v", tc.size, flushed, tc.wantFlush)
		}
		s.Close()
	}
	if err := (&Options{Dir: "d", Site: "a", MemTableSize: MaxMemTableSize + 1}).Validate(); err == nil {
		t.Error("a memtable over MaxMemTableSize accepted")
	}
}

// TestL0CompactionThreshold: L0 gathers l0CompactionThreshold/2
// overlapping tables before Pebble compacts it (with Pebble's default
// threshold of 4, the flushes below leave a compaction run or running).
func TestL0CompactionThreshold(t *testing.T) {
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Site: "a",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	flushes := l0CompactionThreshold/2 - 1
	for f := range flushes {
		var muts []Mutation
		for i := range 200 {
			muts = append(muts, ins(model.Body, fmt.Sprintf("flush %d row %d", f, i)))
		}
		if _, err := s.Apply(context.Background(), muts); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	m := s.db.Metrics()
	if m.Flush.Count < int64(flushes) {
		t.Fatalf("%d flushes, want %d", m.Flush.Count, flushes)
	}
	if m.Compact.Count+m.Compact.NumInProgress > 0 || m.Levels[0].Sublevels < int32(flushes) {
		t.Errorf("after %d flushes of overlapping rows: %d compactions (%d running), %d L0 sublevels; want none and %d",
			flushes, m.Compact.Count, m.Compact.NumInProgress, m.Levels[0].Sublevels, flushes)
	}
}
