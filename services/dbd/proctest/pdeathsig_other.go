//go:build !linux

package proctest

import "os/exec"

// dieWithParent: only Linux has a parent-death signal; elsewhere the
// test's cleanup kills cmd.
func dieWithParent(*exec.Cmd) {}
