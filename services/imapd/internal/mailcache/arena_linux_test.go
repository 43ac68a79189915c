package mailcache

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestArenaHugePageAligned: an arena of several huge pages is mapped at
// a huge page's boundary, so the kernel can back it with huge pages
// (whether it does depends on the host's settings, not asserted here),
// and it works as memory up to its last byte; a small one is heap.
func TestArenaHugePageAligned(t *testing.T) {
	const n = 3*hugePage + 12345
	a, free, err := newArena(n)
	if err != nil {
		t.Fatal(err)
	}
	if free == nil {
		t.Fatal("newArena gave heap for an arena of several huge pages: mmap refused?")
	}
	defer free()
	if len(a) != n || cap(a) != n {
		t.Fatalf("arena of %d bytes, cap %d, want %d", len(a), cap(a), n)
	}
	if addr := uintptr(unsafe.Pointer(unsafe.SliceData(a))); addr%hugePage != 0 {
		t.Fatalf("arena at %#x, not on a huge page boundary", addr)
	}
	pattern := bytes.Repeat([]byte("twinmx"), n/6+1)[:n]
	copy(a, pattern)
	if !bytes.Equal(a, pattern) {
		t.Fatal("the arena did not keep what was written")
	}
	if _, free, _ := newArena(hugePage); free != nil {
		t.Error("an arena of one huge page was mapped apart from the heap")
	}
}
