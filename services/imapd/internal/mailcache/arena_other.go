//go:build !linux

package mailcache

import (
	"fmt"
	"unsafe"
)

// maxHeapArena32 bounds the arena of a 32-bit process, whose heap
// cannot grow to anything near its 2–4 GiB of address space: a heap
// allocation that fails ends the process, so a budget over it is an
// error for the operator instead.
const maxHeapArena32 = 512 << 20

// newArena returns n bytes of heap for a ring; elsewhere than on Linux
// the arena is not asked for in huge pages.
func newArena(n int) (arena []byte, free func(), err error) {
	if unsafe.Sizeof(uintptr(0)) == 4 && n > maxHeapArena32 {
		return nil, nil, fmt.Errorf("at most %d MiB in a 32-bit process", maxHeapArena32>>20)
	}
	return make([]byte, n), nil, nil
}
