//go:build !unix

package gateway

import "os/exec"

// killGroup leaves cmd as it is: without process groups, the context's
// cancel kills the command itself and Cmd.WaitDelay bounds the wait for
// children that hold its output open.
func killGroup(*exec.Cmd) {}
