//go:build !linux && !darwin && !freebsd

package daemon

import "errors"

// diskSpace is not implemented here: after a disk-full failure dbd then
// waits for Config.NoSpaceWait before it exits.
func diskSpace(string) (avail, total uint64, err error) {
	return 0, 0, errors.New("free space: not measured on this platform")
}
