//go:build linux || darwin || freebsd

package daemon

import (
	"fmt"
	"syscall"
)

// diskSpace returns the bytes of dir's file system that an unprivileged
// writer may still use (statfs f_bavail: dbd runs as its own user, so the
// blocks reserved for root are not its to count on) and the size of it.
func diskSpace(dir string) (avail, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}
