package proctest

import (
	"os"
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
