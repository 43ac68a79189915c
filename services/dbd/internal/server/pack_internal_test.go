package server

import (
	"io"
	"reflect"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
)

// packRows splits rows of the given sizes into messages as packer.add
// does, and returns the number of rows of each.
func packRows(sizes []uint64, max int) []int {
	var counts []int
	n, used := 0, uint64(0)
	for _, sz := range sizes {
		if startsMessage(n, used, sz, max) {
			counts = append(counts, n)
			n, used = 0, 0
		}
		if sz > uint64(max) { // alone
			counts = append(counts, 1)
			continue
		}
		n++
		used += sz
	}
	if n > 0 {
		counts = append(counts, n)
	}
	return counts
}

// TestPackRows: where packed answers split (startsMessage).
func TestPackRows(t *testing.T) {
	many := make([]uint64, wire.MaxPackedRows+1)
	for i := range many {
		many[i] = 1
	}
	tests := []struct {
		name  string
		sizes []uint64
		max   int
		want  []int
	}{
		{"none", nil, 100, nil},
		{"one", []uint64{10}, 100, []int{1}},
		{"all fit", []uint64{10, 20, 30}, 100, []int{3}},
		{"exactly full", []uint64{50, 50}, 100, []int{2}},
		{"a byte over", []uint64{50, 51}, 100, []int{1, 1}},
		{"split in order", []uint64{40, 40, 40, 40, 40}, 100, []int{2, 2, 1}},
		{"large row alone in the middle", []uint64{10, 500, 10}, 100, []int{1, 1, 1}},
		{"large row first", []uint64{500, 10, 10}, 100, []int{1, 2}},
		{"large row last", []uint64{10, 10, 500}, 100, []int{2, 1}},
		{"count bound", many, 1 << 20, []int{wire.MaxPackedRows, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := packRows(tt.sizes, tt.max); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("packRows(%v, %d) = %v, want %v", tt.sizes, tt.max, got, tt.want)
			}
		})
	}
}

// TestWriteContentNoAlloc: writing a row's inline content allocates
// nothing. op mails writes five a mail; the chunk callback once captured
// the whole row, which then went to the heap on every call (about 1 kB a
// mail).
func TestWriteContentNoAlloc(t *testing.T) {
	row := store.Row{Table: model.Body, Size: 5, Inline: []byte("hello")}
	chunks := func(store.Row, func([]byte) error) error { t.Fatal("an inline row's chunks read"); return nil }
	if n := testing.AllocsPerRun(100, func() {
		if err := writeContentFrom(io.Discard, row, chunks); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations a write, want 0", n)
	}
}
