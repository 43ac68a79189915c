package mailcache

import (
	"fmt"
	"syscall"
	"unsafe"
)

// hugePage is the size of a transparent huge page on the platforms Go
// runs Linux on (x86 and arm64 with 4 KiB base pages).
const hugePage = 2 << 20

// newArena returns n bytes of memory for a ring, and a function that
// gives it back. An arena of at least two huge pages is mapped apart
// from Go's heap, aligned to a huge page and marked MADV_HUGEPAGE, so
// the kernel fills it in 2 MiB pages where it can (the default setting
// of transparent huge pages on Debian is "madvise": only memory marked
// so gets them, and Go's runtime no longer marks its heap). A smaller
// arena is ordinary heap. The mapping failing (no address space or
// memory for it, e.g. a large arena in a 32-bit process) is an error
// for the operator, where a heap allocation would end the process.
func newArena(n int) (arena []byte, free func(), err error) {
	if n < 2*hugePage {
		return make([]byte, n), nil, nil
	}
	m, err := syscall.Mmap(-1, 0, n+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, fmt.Errorf("map %d bytes: %w", n, err)
	}
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(m))) & (hugePage - 1))
	arena = m[off : off+n : off+n]
	// Without huge pages the arena still works, in 4 KiB pages: an
	// error here costs speed, not correctness.
	_ = syscall.Madvise(arena, syscall.MADV_HUGEPAGE)
	return arena, func() { _ = syscall.Munmap(m) }, nil
}
