//go:build !linux

package proctest

import "os/exec"

// DieWithTest: only Linux has a parent-death signal; elsewhere the
// test's cleanup kills cmd.
func DieWithTest(*exec.Cmd) {}
