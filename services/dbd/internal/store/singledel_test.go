package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestChangeLogLeavesNoTombstones: a row changed soon after it was
// written leaves no tombstone of its old change-log entry once flushed
// (the entry is deleted with SingleDelete, which vanishes with its set),
// even where older tables span the change log's keys; and after rounds of
// changes, flushes and a full compaction the change log is exactly one
// entry per row (checkInvariants).
func TestChangeLogLeavesNoTombstones(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	rows := func(round int) []model.Key {
		var ms []Mutation
		var keys []model.Key
		for i := range 50 {
			m := ins(model.Receive, fmt.Sprintf("receive %d.%d", round, i))
			ms = append(ms, m)
			keys = append(keys, m.Key)
		}
		if _, err := s.Apply(ctx, ms); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	set := func(keys []model.Key, col string, v uint64) {
		var ms []Mutation
		for _, k := range keys {
			ms = append(ms, Mutation{Kind: Set, Table: model.Receive, Key: k, Name: col, Value: v})
		}
		if _, err := s.Apply(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	// tombstones counts the deletions Pebble keeps in the change log.
	tombstones := func() int {
		n := 0
		err := s.db.ScanInternal(ctx, block.CategoryUnknown, []byte{spaceStamp}, []byte{spaceStamp + 1},
			func(k *pebble.InternalKey, _ pebble.LazyValue, _ pebble.IteratorLevel) error {
				if k.Kind() != pebble.InternalKeyKindSet {
					n++
				}
				return nil
			}, nil, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A bottom-level table that spans every key space, change log included.
	first := rows(0)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	second := rows(1)
	set(second, model.ColVerdict, 5)
	set(second, model.ColAcknowledged, 1)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := tombstones(); n != 0 {
		t.Errorf("%d tombstones in the change log after the flush, want 0", n)
	}
	// Old entries in the bottom level, deleted later, compacted away.
	for round := range 3 {
		set(first, "round", uint64(round+1))
		set(second, "round", uint64(round+1))
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	if n := tombstones(); n != 0 {
		t.Errorf("%d tombstones in the change log after the full compaction, want 0", n)
	}
	if _, err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}
