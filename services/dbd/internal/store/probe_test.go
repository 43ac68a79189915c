package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestNewRowLookupsUseL6Filters: with every row compacted into the bottom
// level, inserting new rows must consult that level's bloom filters
// instead of reading its data blocks (see probe). pebble.DB.Get would not
// use them at all: the filter hits would stay at zero.
func TestNewRowLookupsUseL6Filters(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
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
	const fresh = 200
	for i := range fresh {
		res, err := s.Apply(ctx, []Mutation{ins(model.Body, fmt.Sprintf("new row %d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].New {
			t.Fatalf("new row %d found as existing", i)
		}
	}
	// Each new row is looked up once; a few may pass the filter falsely
	// (about 1 %).
	if hits := s.db.Metrics().Filter.Hits - before; hits < fresh*9/10 {
		t.Errorf("L6 filter hits while inserting %d new rows: %d, want about one each", fresh, hits)
	}
	// And the old rows are still found, through the same path.
	res, err := s.Apply(ctx, []Mutation{ins(model.Body, "old row 7")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].New {
		t.Error("a row compacted into L6 was not found")
	}
}
