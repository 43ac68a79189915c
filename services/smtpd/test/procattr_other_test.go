//go:build !linux

package test

import (
	"os/exec"
	"syscall"
)

// dieWithTest is a no-op where the kernel has no parent-death signal.
func dieWithTest(cmd *exec.Cmd, sig syscall.Signal) {}
