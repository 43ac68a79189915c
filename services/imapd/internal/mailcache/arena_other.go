//go:build !linux

package mailcache

// newArena returns n bytes of heap for a ring; elsewhere than on Linux
// the arena is not asked for in huge pages.
func newArena(n int) (arena []byte, free func()) { return make([]byte, n), nil }
