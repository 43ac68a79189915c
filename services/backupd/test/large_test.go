package test

import (
	"bytes"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

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
	ctx := proctest.Ctx(t, 2*time.Minute)
	body := randomBytes(size)
	if _, _, err := w.sites["A"].NewClient("admin").FindOrInsert(ctx, model.Body, body); err != nil {
		t.Fatal(err)
	}
	w.waitConverged(ctx)
	row, err := w.sites["B"].NewClient("admin").FindKey(ctx, model.Body, model.KeyOf(model.Body, body))
	if err != nil || !bytes.Equal(row.Content, body) {
		t.Fatalf("body at B: %v", err)
	}
	peak := peakRSS(t, w.backupd.Process.Pid)
	t.Logf("backupd peak RSS %d MiB for a %d MiB body", peak>>20, size>>20)
	if peak > 4*size {
		t.Errorf("backupd peak RSS %d MiB for a %d MiB body", peak>>20, size>>20)
	}
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes; the
// test is skipped where /proc does not tell.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := proctest.PeakRSS(pid)
	if err != nil {
		t.Skip(err)
	}
	return n
}
