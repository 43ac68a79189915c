package replica_test

import (
	"context"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
)

// TestSourceClockBehindCursor: A comes back (a restored copy, a VM
// snapshot) with its clock ten minutes behind the clock it had, so the
// stamps of its new run start below B's cursor for A, which the lost
// original's stamps raised. The pump must see that in A's status and
// stream from where A's run starts: from the cursor, it skipped A's new
// changes until their stamps passed it (ten minutes' worth of stamps).
func TestSourceClockBehindCursor(t *testing.T) {
	c := newCluster(t, "A", "B")
	stop := c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("before") })
	c.waitConverged(ctx)
	stop()

	figs, err := c.admin("A").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.StampsOf(figs)
	if err != nil {
		t.Fatal(err)
	}
	// The original's stamps, merged into B, ran ten minutes ahead.
	b := c.envs["B"].ClientWithKey(c.key, c.envs["B"].DBKey.Public)
	if _, err := b.Merge(ctx, nil, replica.CursorName("A", "B"), st.Floor+uint64((10*time.Minute).Microseconds())); err != nil {
		t.Fatal(err)
	}
	c.stop("A")
	c.restart("A")
	c.run(c.config())
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("after") })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.waitConverged(wctx)
	if _, err := c.admin("B").Find(ctx, model.Text, []byte("after")); err != nil {
		t.Fatalf("A's write after its restart at B: %v", err)
	}
}
