package replica_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
)

// TestPoisonRowInFullBatch: B refuses one row of a large batch (over its
// request limit), over a link with a round trip of 10 ms or more. The
// other rows must get through, the bad one be counted, and no session
// end. The batch used to be merged row by row, all within the time of one
// merge: a thousand round trips never fit in it, the session ended, the
// next one tried the same batch, and A→B stopped for good.
func TestPoisonRowInFullBatch(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.stop("B")
	c.envs["B"] = dbdtest.Start(t, dbdtest.Options{Dir: c.dirs["B"], MaxMessage: 1 << 20})
	c.proxies["B"].SetTarget(c.envs["B"].Addr)
	cfg := c.config()
	cfg.HeartbeatTimeout = 20 * time.Second // the stall below must not end the session
	// Far below the thousand round trips of merging the batch row by row,
	// far above the stall and one merge of a part.
	cfg.RequestTimeout = 3 * time.Second
	cfg.MinMergeRate = 1 << 30 // the time of a merge: RequestTimeout, whatever its bytes
	c.run(cfg)
	ctx := ctxT(t, 30*time.Second)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("first") })
	c.waitConverged(ctx)

	// One merge stuck behind the stalled link, so that the rows after it
	// queue up and go as one batch.
	c.proxies["B"].Set(backupdtest.Stall)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("trigger") })
	time.Sleep(200 * time.Millisecond)
	const n = 1000
	reqs := make([]wire.Request, 0, n+1)
	for i := range n {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: fmt.Appendf(nil, "row %d", i)})
		if i == n/3 {
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: bytes.Repeat([]byte("poison "), (2<<20)/7)})
		}
	}
	if _, err := c.admin("A").Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the stream hands the rows to the queue
	c.proxies["B"].SetDelay(5 * time.Millisecond)
	c.proxies["B"].Set(backupdtest.Pass)
	last := model.KeyOf(model.Text, fmt.Appendf(nil, "row %d", n-1))
	for {
		if _, err := c.admin("B").FindKey(ctx, model.Text, last); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the rows after the bad one never reached B: %v (sessions ended: %v)", err,
				counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < n; i += 37 { // a sample: each find is a round trip
		if _, err := c.admin("B").FindKey(ctx, model.Text, model.KeyOf(model.Text, fmt.Appendf(nil, "row %d", i))); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	if got := counter(t, c, "twinmx_backupd_bad_rows_total", "from", "A", "to", "B"); got != 1 {
		t.Errorf("bad rows A→B = %v, want 1", got)
	}
	if got := counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B"); got != 0 {
		t.Errorf("A→B: %v sessions ended with an error, want none", got)
	}
}
