package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
)

// TestRestoredAndRebuiltSite brings site A back twice while backupd runs:
// from a checkpoint older than what B already holds of it (a new
// incarnation, see below), then with an empty disk. Each time B's cursor for A is above every stamp A has, so
// if A numbered its new changes from its own last stamp again, backupd
// would skip them for good and the sites would never converge. dbd starts
// the stamps of each run above the time it opened its store, so what A
// writes after coming back reaches B, and B sends A what A lost.
func TestRestoredAndRebuiltSite(t *testing.T) {
	w := newWorld(t, "A", "B")
	a, b := w.sites["A"], w.sites["B"]
	w.startBackupd()
	ctx := proctest.Ctx(t, 3*time.Minute)
	insert := func(prefix string, n int) {
		t.Helper()
		cl := a.NewClient("admin")
		for i := range n {
			if _, _, err := cl.FindOrInsert(ctx, model.Text, fmt.Appendf(nil, "%s %d", prefix, i)); err != nil {
				t.Fatalf("insert %s %d at A: %v", prefix, i, err)
			}
		}
	}
	insert("before the checkpoint", 20)
	inc := incarnation(ctx, t, a)
	a.Dbctl(nil, "backup", "--name", "t")
	ckpt := filepath.Join(a.Dir, "checkpoint")
	if err := os.Rename(filepath.Join(a.Dir, "data", "checkpoints", "t"), ckpt); err != nil {
		t.Fatal(err)
	}
	insert("after the checkpoint", 100)
	w.waitConverged(ctx)

	// Restore: A loses the 100 rows B already has, and B's cursor for A is
	// past A's last stamp.
	a.restoreFrom(ckpt)
	// Row numbers (IMAP UIDs) that A gave after the checkpoint may be
	// given again, so the copy is a new incarnation (a new UIDVALIDITY).
	if got := incarnation(ctx, t, a); got == inc {
		t.Fatalf("A restored from a checkpoint kept its incarnation %d", inc)
	}
	insert("after the restore", 10)
	w.waitConverged(ctx)
	expectAt(ctx, t, b, "after the restore", 10)

	// Rebuild: an empty store, whose stamps would start again at 1.
	a.Kill()
	if err := os.RemoveAll(filepath.Join(a.Dir, "data")); err != nil {
		t.Fatal(err)
	}
	a.Start()
	insert("after the rebuild", 10)
	w.waitConverged(ctx)
	expectAt(ctx, t, b, "after the rebuild", 10)
	expectAt(ctx, t, a, "after the checkpoint", 100)
}

func incarnation(ctx context.Context, t *testing.T, s *site) uint64 {
	t.Helper()
	figs, err := s.NewClient("admin").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := wire.FigureUint(figs, "incarnation")
	if err != nil || !ok {
		t.Fatalf("incarnation in %s's status: %v %v", s.Site, ok, err)
	}
	return v
}

// expectAt checks that site s holds the text rows "prefix 0" … "prefix n-1".
func expectAt(ctx context.Context, t *testing.T, s *site, prefix string, n int) {
	t.Helper()
	cl := s.NewClient("admin")
	for i := range n {
		if _, err := cl.Find(ctx, model.Text, fmt.Appendf(nil, "%s %d", prefix, i)); err != nil {
			t.Fatalf("%q %d at %s: %v", prefix, i, s.Site, err)
		}
	}
}

// TestRestoreUnderLoad: site A is brought back from a checkpoint again and
// again while B keeps writing, so merges into A are in flight when A is
// killed and A's cursors go back under the pumps. Before each restore A's
// writes have reached B, so nothing acknowledged may be missing after
// healing: what A lost comes back from B, what B wrote meanwhile reaches
// A, and what A writes after the restore reaches B. B, never restored,
// must never show a deletion undone. After a restore A writes no
// increments: its own counter slot went back with the copy, and an
// increment there before B's higher count is merged back is lost (the
// slot is per site, not per copy of a site's store).
//
// TWINMX_RESTORE_ROUNDS sets the number of restores (default 2).
func TestRestoreUnderLoad(t *testing.T) {
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("TWINMX_RESTORE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d restores (TWINMX_RESTORE_ROUNDS)", seed, rounds)
	w := newWorld(t, "A", "B")
	a := w.sites["A"]
	w.startBackupd()
	e := backupdtest.NewExpect()
	ctx := proctest.Ctx(t, 3*time.Minute)
	phase, restored := 0, false
	// loadFor runs the workload at the sites for d; A writes no
	// increments once it has been restored.
	loadFor := func(d time.Duration, sites ...string) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, n := range sites {
			rng := rand.New(rand.NewPCG(seed, uint64(phase)))
			phase++
			noIncrements := n == "A" && restored
			wg.Go(func() { w.load(ctx, e, rng, n, noIncrements, stop) })
		}
		time.Sleep(d)
		close(stop)
		wg.Wait()
	}
	tsB := backupdtest.NewTombstones()
	for r := range rounds {
		loadFor(300*time.Millisecond, "A", "B")
		w.waitConverged(ctx)
		name := fmt.Sprintf("r%d", r)
		a.Dbctl(nil, "backup", "--name", name)
		ckpt := filepath.Join(a.Dir, name)
		if err := os.Rename(filepath.Join(a.Dir, "data", "checkpoints", name), ckpt); err != nil {
			t.Fatal(err)
		}
		loadFor(300*time.Millisecond, "A", "B")
		w.waitConverged(ctx)

		// B writes, and A's pumps are busy, while A is swapped.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { w.load(ctx, e, rand.New(rand.NewPCG(seed, uint64(1000+r))), "B", false, stop) })
		wg.Go(func() {
			c := w.sites["B"].NewClient("admin")
			for range 500 {
				if _, err := tsB.Observe(ctx, "B", c, e.Deleted()); err != nil {
					t.Error(err)
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		time.Sleep(100 * time.Millisecond)
		a.restoreFrom(ckpt)
		restored = true
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		w.waitConverged(ctx)
	}
	loadFor(300*time.Millisecond, "A", "B")
	w.checkHealed(ctx, e, backupdtest.NewTombstones())
}

// restoreFrom kills s's dbd, puts the checkpoint folder ckpt in place of
// its data folder, as an operator restores a backup, and starts it again.
func (s *site) restoreFrom(ckpt string) {
	s.T().Helper()
	s.Kill()
	if err := os.RemoveAll(filepath.Join(s.Dir, "data")); err != nil {
		s.T().Fatal(err)
	}
	if err := os.Rename(ckpt, filepath.Join(s.Dir, "data")); err != nil {
		s.T().Fatal(err)
	}
	s.Start()
}
