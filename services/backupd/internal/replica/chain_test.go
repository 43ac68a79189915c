package replica_test

import (
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
)

// TestChainMiddleRestored: a chain A–B–C, one replicator for A and B and
// one for B and C (docs/backupd.md, Topologies). B comes back from a
// checkpoint older than what A and C hold of it; writes go on at all three
// sites before and after, B's right after the restore. The sites converge with every acknowledged
// write: B gets back from both ends what it lost (the rows A and C hold
// as sent by B come without content and are read again), and what B
// writes after the restore reaches both.
func TestChainMiddleRestored(t *testing.T) {
	c := newCluster(t, "A", "B", "C")
	link := func(a, b string) {
		cfg := c.config()
		var sites []replica.Site
		for _, s := range cfg.Sites {
			if s.Name == a || s.Name == b {
				sites = append(sites, s)
			}
		}
		cfg.Sites = sites
		c.run(cfg)
	}
	link("A", "B")
	link("B", "C")
	ctx := ctxT(t, 60*time.Second)
	e := backupdtest.NewExpect()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	load(t, ctx, c, e, seed, 40)
	c.waitConverged(ctx)
	if _, err := c.admin("B").Checkpoint(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	load(t, ctx, c, e, seed+1, 40)
	c.waitConverged(ctx)

	c.restoreFrom("B", "t")
	// Writes at once, B's too: B's counter slot went back with its store,
	// so it counts on in a new one (its new incarnation's), and the
	// higher count A and C return of the old slot does not swallow them.
	load(t, ctx, c, e, seed+2, 40)
	c.waitConverged(ctx)
	for _, n := range c.names {
		e.Check(t, ctx, n, c.admin(n))
	}
}
