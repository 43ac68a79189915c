package test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill cmd's process when the test process
// dies, so a test binary killed by its timeout leaves no dbd, smtpd or
// Postfix watchdog behind.
func dieWithTest(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
}
