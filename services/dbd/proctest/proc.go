package proctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Proc is one program a black-box test runs (smtpd, pop3d, backupd, ...).
// Its standard output and error go to Log; it dies with the test process,
// and the test's cleanup kills it and, if the test failed, logs the end
// of its output.
type Proc struct {
	t    testing.TB
	name string
	path string
	args []string
	wait string
	// Env is more environment (NAME=VALUE) for the next Start.
	Env []string
	Cmd *exec.Cmd // nil while it does not run
	Log *SyncBuffer
}

// NewProc prepares program name from folder bin with args; Start runs
// it and, unless wait is "", waits until wait accepts connections.
func NewProc(t testing.TB, bin, name, wait string, args ...string) *Proc {
	p := &Proc{t: t, name: name, path: filepath.Join(bin, name), args: args, wait: wait}
	t.Cleanup(func() {
		if t.Failed() && p.Log != nil {
			t.Logf("%s log (tail):\n%s", name, Tail(p.Log.String(), 60))
		}
		p.Kill()
	})
	return p
}

// StartProc is NewProc and Start.
func StartProc(t testing.TB, bin, name, wait string, args ...string) *Proc {
	t.Helper()
	p := NewProc(t, bin, name, wait, args...)
	p.Start()
	return p
}

// Start runs the program (again, after Kill or its exit: same arguments,
// a new Log) and waits as NewProc says.
func (p *Proc) Start() {
	p.t.Helper()
	p.Log = &SyncBuffer{}
	p.Cmd = exec.Command(p.path, p.args...)
	if len(p.Env) > 0 {
		p.Cmd.Env = append(os.Environ(), p.Env...)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	DieWithTest(p.Cmd)
	if err := p.Cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	if p.wait != "" {
		WaitListening(p.t, p.wait, 20*time.Second, p.Log)
	}
}

// Kill sends SIGKILL and reaps the process.
func (p *Proc) Kill() {
	killWait(p.Cmd)
	p.Cmd = nil
}

// killWait sends SIGKILL to cmd's process, if it runs, and reaps it.
func killWait(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
}
