package replica_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestRebuiltSiteBehindFullQueue: site A comes back with an empty disk
// while B holds more of its own content than a pump queues. B keeps A's
// old rows as sent by A, so the B→A pump gets them without content and
// must read each one from B again; meanwhile the stream behind them fills
// the queue, and the stream's connection stops being read. A read of a row
// on that same connection then never got its answer: every session hung
// at the first such row until the heartbeat dropped it, and A never
// converged.
func TestRebuiltSiteBehindFullQueue(t *testing.T) {
	c := newCluster(t, "A", "B")
	cfg := c.config()
	cfg.MaxQueuedBytes = 256 << 10
	cfg.MaxBatchBytes = 64 << 10
	c.run(cfg)
	ctx := ctxT(t, 60*time.Second)
	insertAll(ctx, t, c, "A", 300, func(i int) []byte { return fmt.Appendf(nil, "row of A %d", i) })
	c.waitConverged(ctx)
	// Four times the queue's bound, streamed after A's rows.
	insertAll(ctx, t, c, "B", 64, func(int) []byte {
		b := make([]byte, 16<<10)
		rand.Read(b)
		return b
	})
	c.waitConverged(ctx)

	c.stop("A")
	if err := os.RemoveAll(filepath.Join(c.dirs["A"], "data")); err != nil {
		t.Fatal(err)
	}
	c.restart("A")
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c.waitConverged(wctx)
}

// insertAll inserts n text rows at site name in one batch.
func insertAll(ctx context.Context, t *testing.T, c *cluster, name string, n int, content func(int) []byte) {
	t.Helper()
	reqs := make([]wire.Request, n)
	for i := range reqs {
		reqs[i] = wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: content(i)}
	}
	if _, err := c.admin(name).Batch(ctx, reqs); err != nil {
		t.Fatalf("insert at %s: %v", name, err)
	}
}
