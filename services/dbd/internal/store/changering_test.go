package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestRecentChanges: the latest changes come from memory as the changes
// stream sends them (stamp order, origin, content), every change of a row
// once; a cursor older than what memory holds, or from before the store
// was opened, is refused, so the stream reads the log instead.
func TestRecentChanges(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	small := ins(model.Text, "small")
	bigContent := bytes.Repeat([]byte("0123456789abcdef"), (chunkSize+100)/16)
	big := Mutation{Kind: Insert, Table: model.Body, Key: model.KeyOf(model.Body, bigContent), Content: bigContent}
	if _, err := s.Apply(ctx, []Mutation{small, big}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []Mutation{{Kind: Set, Table: model.Text, Key: small.Key, Name: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	merged := ins(model.Text, "merged")
	if _, err := s.Merge(ctx, []MergeRow{{Table: model.Text, Key: merged.Key, Content: merged.Content}}, "repl.b-to-a", 5); err != nil {
		t.Fatal(err)
	}
	rows, ok := s.RecentChanges(0, 100, nil)
	if !ok || len(rows) != 4 {
		t.Fatalf("RecentChanges(0) = %d rows, %v; want 4 (small twice), true", len(rows), ok)
	}
	want := []struct {
		key    model.Key
		x      uint64
		origin string
		c      []byte
	}{{small.Key, 0, "", small.Content}, {big.Key, 0, "", bigContent}, {small.Key, 1, "", small.Content}, {merged.Key, 0, "repl.b-to-a", merged.Content}}
	for i, w := range want {
		r := rows[i]
		if r.Key != w.key || r.State.Col("x") != w.x || r.Origin != w.origin {
			t.Errorf("change %d: key %s x %d origin %q; want %s %d %q", i, r.Key, r.State.Col("x"), r.Origin, w.key, w.x, w.origin)
		}
		if i > 0 && r.Stamp <= rows[i-1].Stamp {
			t.Errorf("change %d: stamp %d not above %d", i, r.Stamp, rows[i-1].Stamp)
		}
		var got []byte
		if err := s.RecentContent(r, func(c []byte) error { got = append(got, c...); return nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.c) {
			t.Errorf("change %d: content of %d bytes, want %d", i, len(got), len(w.c))
		}
	}
	if rest, ok := s.RecentChanges(rows[1].Stamp, 100, nil); !ok || len(rest) != 2 || rest[0].Stamp != rows[2].Stamp {
		t.Errorf("RecentChanges after the second: %d rows, %v; want the last two", len(rest), ok)
	}
	if one, ok := s.RecentChanges(0, 1, nil); !ok || len(one) != 1 {
		t.Errorf("RecentChanges with max 1: %d rows, %v", len(one), ok)
	}

	// Many more changes than memory holds: the oldest cursor is refused.
	for i := 0; i < changeRingMax+10; i += 500 {
		var ms []Mutation
		for j := i; j < i+500; j++ {
			ms = append(ms, ins(model.Text, fmt.Sprint("row ", j)))
		}
		if _, err := s.Apply(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.RecentChanges(rows[0].Stamp, 100, nil); ok {
		t.Error("RecentChanges of a cursor older than memory holds: ok")
	}
	last := s.LastStamp()
	if got, ok := s.RecentChanges(last-10, 100, nil); !ok || len(got) != 10 {
		t.Errorf("RecentChanges of the last 10: %d rows, %v", len(got), ok)
	}
	s.Close()

	// After a reopen, memory holds nothing from before.
	s = openTest(t, fs)
	defer s.Close()
	if _, ok := s.RecentChanges(last-1, 100, nil); ok {
		t.Error("RecentChanges of a cursor from before the reopen: ok")
	}
	if got, ok := s.RecentChanges(last, 100, nil); !ok || len(got) != 0 {
		t.Errorf("RecentChanges at the last stamp on disk: %d rows, %v; want none, true", len(got), ok)
	}
}
