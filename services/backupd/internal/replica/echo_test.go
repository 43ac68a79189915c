package replica_test

import (
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
)

// TestEchoesLeftOut: rows a pump merged into B come back in B's changes
// stream, and the marks B→A merged into A come back in A's. The site they
// go back to holds them already (backupd saw its changes stream show that
// state, in the dbd run it is still in), so they are left out of the
// merges. Before 2026-11-30 each was merged as a no-op: per mail, the
// received and msgid rows B→A and the four marked rows A→B.
// TestChainMiddleRestored, TestRebuildOverSlowLink,
// TestRebuiltSiteBehindFullQueue and TestLagAfterRestoredDestination fail
// if the dbd run is not checked: a site restored from an older copy must
// get back the rows it lost.
func TestEchoesLeftOut(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	const n = 5
	for i := range n {
		m := backupdtest.NewMail(i, "alice@example.org")
		if _, err := c.smtpd("A").Batch(ctx, m.Batch()); err != nil {
			t.Fatal(err)
		}
		if err := eventuallyMarked(ctx, c, "A", m); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(ctx)
	// Each mail's received and msgid rows (never changed) come back from
	// B as they went; its receive, mail, header and body rows come back
	// from A with the mark B's merge gave them.
	back, again := 0.0, 0.0
	for back < 2*n || again < 4*n {
		back = counter(t, c, "twinmx_backupd_echo_rows_total", "from", "B", "to", "A")
		again = counter(t, c, "twinmx_backupd_echo_rows_total", "from", "A", "to", "B")
		select {
		case <-ctx.Done():
			t.Fatalf("echoes left out: %v B→A, want %d; %v A→B, want %d", back, 2*n, again, 4*n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if r := gathered(t, c, "twinmx_backupd_mark_rounds_total"); r != 0 {
		t.Errorf("%v marker rounds, want none", r)
	}
	c.waitConverged(ctx)
}
