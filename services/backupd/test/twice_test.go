package test

import (
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestTwoBackupdsAtOnce: an operator starts a second backupd for the same
// sites by mistake (a unit and a manual run). Both merge the same changes
// into the same cursors and mark the same mails; merges and marks only
// raise, and each holds its cursor below the mails it has not settled, so
// the sites still converge with every write and every mark, also when one
// of the two is killed with SIGKILL while mail flows.
func TestTwoBackupdsAtOnce(t *testing.T) {
	w := newWorld(t, "A", "B")
	w.startBackupd()
	second := w.spawnBackupd()
	e := backupdtest.NewExpect()
	ts := backupdtest.NewTombstones()
	ctx := proctest.Ctx(t, 3*time.Minute)
	for round := range 2 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for si, n := range w.names {
			wg.Go(func() { w.load(ctx, e, rand.New(rand.NewPCG(7, uint64(round*10+si))), n, false, stop) })
		}
		wg.Go(func() { w.watchTombstones(ctx, e, ts, stop) })
		time.Sleep(300 * time.Millisecond)
		if round == 0 {
			second.Process.Kill()
			second.Wait()
		}
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		if round == 0 {
			second = w.spawnBackupd()
		}
	}
	w.checkHealed(ctx, e, ts)
}

// spawnBackupd starts one more backupd for the world's sites (through the
// proxies), without metrics; it dies with the test.
func (w *world) spawnBackupd() *exec.Cmd {
	w.t.Helper()
	args := append([]string{"--key", filepath.Join(w.dir, "backupd")}, w.siteFlags(true)...)
	cmd := exec.Command(filepath.Join(binDir, "backupd"), args...)
	log := &proctest.SyncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if w.t.Failed() {
			w.t.Logf("second backupd log (tail):\n%s", proctest.Tail(log.String(), 40))
		}
	})
	return cmd
}
