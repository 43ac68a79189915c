package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// TestSparseNumberIndex: the tables that are not numbered (a mail's
// content) get one number index entry per group commit, the highest row
// number; Newest still lists their rows by number, and a reopened store
// numbers on above every row.
func TestSparseNumberIndex(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openTest(t, fs)
	var want []model.Key // body keys by row number
	for g := range 3 {
		var ms []Mutation
		for i := range 4 {
			m := ins(model.Body, fmt.Sprintf("body %d.%d", g, i))
			ms = append(ms, m, ins(model.Receive, fmt.Sprintf("receive %d.%d", g, i)))
			want = append(want, m.Key)
		}
		if _, err := s.Apply(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	entries := func(tb model.Table) int {
		p := []byte{spaceNumber, byte(tb)}
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		return n
	}
	if b, r := entries(model.Body), entries(model.Receive); b != 3 || r != 12 {
		t.Errorf("number index entries: body %d, receive %d; want 3 (one a group) and 12", b, r)
	}
	newest := func(limit int) []model.Key {
		v := mustView(t, s)
		defer v.Close()
		var got []model.Key
		if err := v.Newest(model.Body, limit, func(r Row) error {
			if r.Inline == nil {
				t.Errorf("body row %d read without its content", r.RowNo)
			}
			got = append(got, r.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, limit := range []int{0, 1, 5, 12, 100} {
		got := newest(limit)
		if len(got) != min(limit, len(want)) {
			t.Fatalf("Newest(body, %d): %d rows", limit, len(got))
		}
		for i, k := range got {
			if k != want[len(want)-1-i] {
				t.Errorf("Newest(body, %d)[%d] = %s, want %s", limit, i, k, want[len(want)-1-i])
			}
		}
	}
	if _, err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, fs)
	defer s.Close()
	res, err := s.Apply(ctx, []Mutation{ins(model.Body, "after the reopen")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].RowNo != 13 {
		t.Errorf("row number after the reopen %d, want 13", res[0].RowNo)
	}
	if _, err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}
