package replica_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
)

// TestLagAfterRestoredDestination: B comes back from a checkpoint that
// lacks 100 of A's rows, so B's cursor for A is lower than before and
// those rows are to be sent again. Until they are, the lag figures must
// say so; they used to keep the highest stamp ever merged and showed no
// lag at all, while A's link was stalled.
func TestLagAfterRestoredDestination(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	insertAll(ctx, t, c, "A", 10, func(i int) []byte { return fmt.Appendf(nil, "before %d", i) })
	c.waitConverged(ctx)
	if _, err := c.admin("B").Checkpoint(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	insertAll(ctx, t, c, "A", 100, func(i int) []byte { return fmt.Appendf(nil, "after %d", i) })
	c.waitConverged(ctx)
	for gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B") != 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}

	c.proxies["A"].Set(backupdtest.Stall)
	c.stop("B")
	data := filepath.Join(c.dirs["B"], "data")
	ckpt := filepath.Join(c.dirs["B"], "checkpoint")
	if err := os.Rename(filepath.Join(data, "checkpoints", "t"), ckpt); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ckpt, data); err != nil {
		t.Fatal(err)
	}
	c.restart("B")
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows := gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B")
		secs := gauge(t, c, "twinmx_backupd_lag_seconds", "from", "A", "to", "B")
		if rows >= 100 && secs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A→B with B restored and A stalled: lag %v rows, %v s; want at least 100 rows and some seconds", rows, secs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.proxies["A"].Set(backupdtest.Pass)
	c.waitConverged(ctx)
	for gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B") != 0 {
		if ctx.Err() != nil {
			t.Fatal("A→B lag did not fall back to 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
