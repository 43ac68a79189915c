package proctest

import (
	"os/exec"
	"syscall"
)

// DieWithTest has the kernel kill cmd with SIGKILL when the test process
// dies, so a test binary killed by its timeout leaves no server behind.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
