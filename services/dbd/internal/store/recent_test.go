package store

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestRecentRows: writes to rows the writer remembers (recentRows) and to
// rows it has forgotten (more than two generations written since, or a
// content too large to keep) give the same rows as Pebble holds, after a
// reopen too (nothing remembered that was not written).
func TestRecentRows(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, fs)
	ctx := context.Background()
	cont := func(i int) []byte {
		c := make([]byte, 40)
		if i == 1 {
			c = make([]byte, recentInlineMax+1) // inline, too large to keep
		}
		binary.BigEndian.PutUint64(c, uint64(i))
		return c
	}
	const n = 2*recentMax + 10 // the first rows are forgotten by the end
	var muts []Mutation
	for i := range n {
		muts = append(muts, Mutation{Kind: Insert, Table: model.Receive, Key: model.KeyOf(model.Receive, cont(i)), Content: cont(i)})
	}
	if _, err := s.Apply(ctx, muts); err != nil {
		t.Fatal(err)
	}
	key := func(i int) model.Key { return model.KeyOf(model.Receive, cont(i)) }
	set := func(i int, col string, v uint64) {
		t.Helper()
		res, err := s.Apply(ctx, []Mutation{{Kind: Set, Table: model.Receive, Key: key(i), Name: col, Value: v}})
		if err != nil || res[0].NotFound || res[0].RowNo != uint64(i+1) {
			t.Fatalf("set %s of row %d: %+v, %v", col, i, res, err)
		}
	}
	rows := []int{0, 1, 2, n - 2, n - 1}
	for _, i := range rows {
		set(i, "verdict", 3)
		set(i, "ack", 1)
		set(i, "verdict", 2) // never lowers
	}
	check := func(s *Store) {
		t.Helper()
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		for _, i := range rows {
			r, ok, err := v.Find(model.Receive, key(i))
			if err != nil || !ok || r.RowNo != uint64(i+1) || r.State.Col("verdict") != 3 || r.State.Col("ack") != 1 || r.Size != uint64(len(cont(i))) {
				t.Fatalf("row %d = %+v, %v, %v", i, r, ok, err)
			}
		}
		var stamps []uint64
		err = v.Changes(0, func(r Row) error { stamps = append(stamps, r.Stamp); return nil })
		if err != nil || len(stamps) != n {
			t.Fatalf("changes: %d rows (want %d), %v", len(stamps), n, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, fs)
	check(s)
	set(n-1, "verdict", 4)
	if r, ok, err := findRow(s, key(n-1)); err != nil || !ok || r.State.Col("verdict") != 4 {
		t.Fatalf("after reopen: %+v, %v, %v", r, ok, err)
	}
}

func findRow(s *Store, k model.Key) (Row, bool, error) {
	v, err := s.View()
	if err != nil {
		return Row{}, false, err
	}
	defer v.Close()
	return v.Find(model.Receive, k)
}

// BenchmarkLookupRecent: the writer's lookup of a row written a moment
// ago (the receive row a verdict is set on), with recentRows and without
// (through the group's Pebble probe, as before it). 20,000 rows of 64
// bytes in the store, the row looked up in the memtable.
func BenchmarkLookupRecent(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), Site: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var refs []rowRef
	for i := range 20 {
		var muts []Mutation
		for j := range 1000 {
			c := make([]byte, 64)
			binary.BigEndian.PutUint64(c, uint64(i*1000+j))
			k := model.KeyOf(model.Receive, c)
			muts = append(muts, Mutation{Kind: Insert, Table: model.Receive, Key: k, Content: c})
			refs = append(refs, rowRef{model.Receive, k})
		}
		if _, err := s.Apply(context.Background(), muts); err != nil {
			b.Fatal(err)
		}
	}
	recent := refs[len(refs)-1000:]
	for _, mode := range []string{"remembered", "probe"} {
		b.Run(mode, func(b *testing.B) {
			// The writer is idle between Applies; the benchmark stands in
			// for it, as the only one using the store's writer state.
			saved := s.recent
			if mode == "probe" {
				s.recent = recentRows{}
			}
			defer func() { s.recent = saved }()
			g := s.newGroup()
			defer g.release()
			i := 0
			for b.Loop() {
				st, err := g.lookup(recent[i%len(recent)])
				if err != nil || !st.exists {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
