package store

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestNewestBelow: a scan pages from the newest rows to the oldest by
// passing the smallest row number of the previous page as before; every
// row comes once, newest first, for a numbered table (receive, read
// backwards on its number index) and for one that is not (body, read
// whole).
func TestNewestBelow(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	rowNos := map[model.Table][]uint64{} // by table, in row number order
	for g := range 3 {
		var ms []Mutation
		for i := range 4 {
			ms = append(ms, ins(model.Body, fmt.Sprintf("body %d.%d", g, i)), ins(model.Receive, fmt.Sprintf("receive %d.%d", g, i)))
		}
		res, err := s.Apply(ctx, ms)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			rowNos[ms[i].Table] = append(rowNos[ms[i].Table], r.RowNo)
		}
	}
	below := func(tb model.Table, before uint64, limit int) []uint64 {
		t.Helper()
		v := mustView(t, s)
		defer v.Close()
		var got []uint64
		if err := v.NewestBelow(tb, before, limit, func(r Row) error {
			got = append(got, r.RowNo)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tb := range []model.Table{model.Receive, model.Body} {
		all := rowNos[tb]
		// Each bound, against the rows numbered below it, newest first.
		for before := uint64(0); before <= all[len(all)-1]+2; before++ {
			var want []uint64
			for i := len(all) - 1; i >= 0 && len(want) < 3; i-- {
				if all[i] < before {
					want = append(want, all[i])
				}
			}
			if got := below(tb, before, 3); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("NewestBelow(%s, %d, 3) = %v, want %v", tb, before, got, want)
			}
		}
		if got := below(tb, math.MaxUint64, 100); len(got) != len(all) || got[0] != all[len(all)-1] {
			t.Errorf("NewestBelow(%s, max, 100) = %v, want all of %v, newest first", tb, got, all)
		}
		// Paging: every row once.
		var paged []uint64
		for before, pages := uint64(math.MaxUint64), 0; pages < 10; pages++ {
			page := below(tb, before, 5)
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			before = page[len(page)-1]
		}
		if len(paged) != len(all) {
			t.Fatalf("paging %s by 5: %v, want %d rows", tb, paged, len(all))
		}
		for i, n := range paged {
			if n != all[len(all)-1-i] {
				t.Errorf("paging %s by 5: row %d is number %d, want %d", tb, i, n, all[len(all)-1-i])
			}
		}
	}
}
