package test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestLargeContentRoundTrip inserts a 50 MiB content (a mail with a big
// attachment is one body row), finds it and streams it back, over the wire
// and with dbctl, and reports dbd's peak memory. dbd must not hold more
// than a couple of copies of the content.
func TestLargeContentRoundTrip(t *testing.T) {
	const size = 50 << 20
	s := newSite(t)
	s.Start()
	idle := peakRSS(t, s.Cmd.Process.Pid)
	big := randomBytes(size)
	ctx := proctest.Ctx(t, 3*time.Minute)
	c := s.NewClient("admin")
	start := time.Now()
	if _, isNew, err := c.FindOrInsert(ctx, model.Body, big); err != nil || !isNew {
		t.Fatalf("insert 50 MiB: new %v, %v", isNew, err)
	}
	ins := time.Since(start)
	afterInsert := peakRSS(t, s.Cmd.Process.Pid)
	start = time.Now()
	row, err := c.FindKey(ctx, model.Body, model.KeyOf(model.Body, big))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(row.Content, big) {
		t.Fatalf("50 MiB content came back different (%d bytes)", len(row.Content))
	}
	find := time.Since(start)
	peak := peakRSS(t, s.Cmd.Process.Pid)
	t.Logf("50 MiB: insert %s, find %s; dbd peak RSS %d MiB (idle %d MiB, after the insert %d MiB) = %.1f× the content",
		ins.Round(time.Millisecond), find.Round(time.Millisecond), peak>>20, idle>>20, afterInsert>>20, float64(peak-idle)/size)
	// The request buffer plus Pebble's batch are two copies; allow a third
	// for Pebble's flushable batch and allocator slack, no more.
	if peak-idle > 3*size+32<<20 {
		t.Errorf("dbd peak RSS grew by %d MiB for a 50 MiB content: more than a couple of copies", (peak-idle)>>20)
	}
	// The same through dbctl: content from a file, streamed back raw.
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := s.Dbctl(nil, "find-or-insert", "--file", "body", path); got != "1 old\n" {
		t.Fatalf("dbctl find-or-insert of the same 50 MiB = %q, want \"1 old\"", got)
	}
	if out := s.Dbctl(nil, "find", "--raw", "--file", "body", path); !bytes.Equal([]byte(out), big) {
		t.Fatalf("dbctl find --raw returned %d bytes, not the content", len(out))
	}
}
