package test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestLargeBody replicates a 40 MiB body and reports backupd's peak memory.
// The pump bounds what it has read but not merged; the merge is sent from
// the row's own content, and B's echo of the row back to A comes without
// content (changes with exclude). The wire client still holds the frames
// of the changes event while joining them, and Go's collector lets the heap
// grow past the live data, so the bound is 4 copies (amd64 measures about
// 2.3).
func TestLargeBody(t *testing.T) {
	const size = 40 << 20
	w := newWorld(t, "A", "B")
	w.startBackupd()
	ctx := ctxT(t, 2*time.Minute)
	body := randomBytes(size)
	if _, _, err := w.sites["A"].client().FindOrInsert(ctx, model.Body, body); err != nil {
		t.Fatal(err)
	}
	w.waitConverged(ctx)
	row, err := w.sites["B"].client().FindKey(ctx, model.Body, model.KeyOf(model.Body, body))
	if err != nil || !bytes.Equal(row.Content, body) {
		t.Fatalf("body at B: %v", err)
	}
	peak := peakRSS(t, w.backupd.Process.Pid)
	t.Logf("backupd peak RSS %d MiB for a %d MiB body", peak>>20, size>>20)
	if peak > 4*size {
		t.Errorf("backupd peak RSS %d MiB for a %d MiB body", peak>>20, size>>20)
	}
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc status")
	return 0
}
