package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCPUTime: this process's CPU time grows while it burns CPU (the loop
// ends as soon as it does; 30 s of wall time without any is a failure).
func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := uint64(1)
	for deadline := time.Now().Add(30 * time.Second); ; {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		now, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 50*time.Millisecond {
			break
		}
		if now < before || time.Now().After(deadline) {
			t.Fatalf("CPU time went from %s to %s while busy (x=%d)", before, now, x)
		}
	}
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("CPU time of pid -1: no error")
	}
}

// TestCPUTimeFine: where the kernel keeps per-thread schedstat, CPUTime
// is not in 10 ms steps, and it agrees with /proc/PID/stat's user +
// system time to within two of those steps.
func TestCPUTimeFine(t *testing.T) {
	if _, ok := threadsRunTime(os.Getpid()); !ok {
		t.Skip("no /proc/PID/task/*/schedstat here: CPUTime counts in 10 ms steps")
	}
	step := time.Second / clockTicks
	x, fine := uint64(1), false
	for range 20 {
		for i := 0; i < 2000000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		got, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		f, err := statFields(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		coarse, err := ticks(f[11:13])
		if err != nil {
			t.Fatal(err)
		}
		if d := got - coarse; d < -2*step || d > 2*step+coarse/50 {
			t.Fatalf("CPUTime %s, /proc/PID/stat %s (x=%d)", got, coarse, x)
		}
		fine = fine || got%step != 0
	}
	if !fine {
		t.Error("CPUTime was a multiple of 10 ms in 20 readings: not the threads' run time")
	}
}

// TestTreeCPUTime: the CPU time of a child that ended and was waited for
// counts in its parent's tree, not in the parent's own time.
func TestTreeCPUTime(t *testing.T) {
	cmd := exec.Command("sh", "-c", `(i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done); exec sleep 30`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(60 * time.Second); ; {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(comm)) == "sleep" {
			break // the busy subshell ended and was waited for
		}
		if time.Now().After(deadline) {
			t.Fatal("the busy subshell did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	own, err := CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	total, err := TreeCPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if total < 50*time.Millisecond || total-own < 50*time.Millisecond {
		t.Fatalf("tree CPU %s, own %s: the ended child's time is missing", total, own)
	}
	if _, err := TreeCPUTime(-1); err == nil {
		t.Fatal("tree CPU time of pid -1: no error")
	}
}
