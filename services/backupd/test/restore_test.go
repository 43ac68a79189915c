package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
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
		cl := a.client()
		for i := range n {
			if _, _, err := cl.FindOrInsert(ctx, model.Text, fmt.Appendf(nil, "%s %d", prefix, i)); err != nil {
				t.Fatalf("insert %s %d at A: %v", prefix, i, err)
			}
		}
	}
	insert("before the checkpoint", 20)
	inc := incarnation(ctx, t, a)
	a.dbctl("backup", "--name", "t")
	ckpt := filepath.Join(a.dir, "checkpoint")
	if err := os.Rename(filepath.Join(a.dir, "data", "checkpoints", "t"), ckpt); err != nil {
		t.Fatal(err)
	}
	insert("after the checkpoint", 100)
	w.waitConverged(ctx)

	// Restore: A loses the 100 rows B already has, and B's cursor for A is
	// past A's last stamp.
	a.kill()
	if err := os.RemoveAll(filepath.Join(a.dir, "data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ckpt, filepath.Join(a.dir, "data")); err != nil {
		t.Fatal(err)
	}
	a.start()
	// Row numbers (IMAP UIDs) that A gave after the checkpoint may be
	// given again, so the copy is a new incarnation (a new UIDVALIDITY).
	if got := incarnation(ctx, t, a); got == inc {
		t.Fatalf("A restored from a checkpoint kept its incarnation %d", inc)
	}
	insert("after the restore", 10)
	w.waitConverged(ctx)
	expectAt(ctx, t, b, "after the restore", 10)

	// Rebuild: an empty store, whose stamps would start again at 1.
	a.kill()
	if err := os.RemoveAll(filepath.Join(a.dir, "data")); err != nil {
		t.Fatal(err)
	}
	a.start()
	insert("after the rebuild", 10)
	w.waitConverged(ctx)
	expectAt(ctx, t, b, "after the rebuild", 10)
	expectAt(ctx, t, a, "after the checkpoint", 100)
}

func incarnation(ctx context.Context, t *testing.T, s *site) uint64 {
	t.Helper()
	figs, err := s.client().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := wire.FigureUint(figs, "incarnation")
	if err != nil || !ok {
		t.Fatalf("incarnation in %s's status: %v %v", s.name, ok, err)
	}
	return v
}

// expectAt checks that site s holds the text rows "prefix 0" … "prefix n-1".
func expectAt(ctx context.Context, t *testing.T, s *site, prefix string, n int) {
	t.Helper()
	cl := s.client()
	for i := range n {
		if _, err := cl.Find(ctx, model.Text, fmt.Appendf(nil, "%s %d", prefix, i)); err != nil {
			t.Fatalf("%q %d at %s: %v", prefix, i, s.name, err)
		}
	}
}
