//go:build unix

package gateway

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// killGroup makes cmd the leader of a new process group and has the
// context's cancel kill that whole group, so a shell script's children
// die with it instead of living on with smsd's output pipe.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			// Gone already: a command that exited 0 just before the
			// timeout did send.
			return os.ErrProcessDone
		}
		return err
	}
}
