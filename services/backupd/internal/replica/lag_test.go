package replica_test

import (
	"fmt"
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
	c.restoreFrom("B", "t")
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

// TestSessionErrorStage: B's link stalls while a merge into B is in
// flight. The heartbeat ends the session, and the error counted and
// logged must be the heartbeat's: it used to be the merge's "context
// canceled", counted as stage merge (the destination refusing writes, in
// docs/operations.md's words).
func TestSessionErrorStage(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("first") })
	c.waitConverged(ctx)
	c.proxies["B"].Set(backupdtest.Stall)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("second") })
	for counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B") == 0 {
		if ctx.Err() != nil {
			t.Fatal("A→B: no session ended with B stalled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.proxies["B"].Set(backupdtest.Pass)
	if n := counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B", "stage", "merge"); n != 0 {
		t.Errorf("A→B: %v sessions ended with stage merge, want 0 (heartbeat %v)", n,
			counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B", "stage", "heartbeat"))
	}
	c.waitConverged(ctx)
}

// TestLagAfterRestoredSource: the pump has seen five of A's changes that
// B's cut link kept it from merging when A comes back from an older
// checkpoint that lacks them. They are gone: once B's link heals, the lag
// must fall to 0 although A writes nothing more. It used to stay at those
// five stamps, its age growing, until A's next change.
func TestLagAfterRestoredSource(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 60*time.Second)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("before") })
	c.waitConverged(ctx)
	if _, err := c.admin("A").Checkpoint(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	c.proxies["B"].Set(backupdtest.Cut)
	insertAll(ctx, t, c, "A", 5, func(i int) []byte { return fmt.Appendf(nil, "lost %d", i) })
	for gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B") < 5 {
		if ctx.Err() != nil {
			t.Fatal("A→B lag never showed A's five changes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.restoreFrom("A", "t")
	c.proxies["B"].Set(backupdtest.Pass)
	c.waitConverged(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows := gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B")
		secs := gauge(t, c, "twinmx_backupd_lag_seconds", "from", "A", "to", "B")
		if rows == 0 && secs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A→B with nothing to send: lag %v rows, %v s; want 0", rows, secs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLagCountsWhileDestinationDown: with B's link cut and the session
// that was running ended, A takes five changes; the A→B lag must count
// them. Every new session ends at B's cursor, and the pump used to read
// A's stamps only after it, so the rows figure stood still for as long as
// B was unreachable (and TestLagAfterRestoredSource failed whenever the
// cut ended the running session before A's changes reached it).
func TestLagCountsWhileDestinationDown(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	insertAll(ctx, t, c, "A", 1, func(int) []byte { return []byte("before") })
	c.waitConverged(ctx)
	ended := counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B")
	c.proxies["B"].Set(backupdtest.Cut)
	for counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B") <= ended {
		if ctx.Err() != nil {
			t.Fatal("A→B: the session did not end with B's link cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
	insertAll(ctx, t, c, "A", 5, func(i int) []byte { return fmt.Appendf(nil, "while B is down %d", i) })
	for gauge(t, c, "twinmx_backupd_lag_rows", "from", "A", "to", "B") < 5 {
		if ctx.Err() != nil {
			t.Fatal("A→B lag never counted A's five changes while B was down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.proxies["B"].Set(backupdtest.Pass)
	c.waitConverged(ctx)
}

// TestLagUnknownUntilCursorRead: backupd starts while B's link is cut,
// after A restarted (so A's stamps lie far above 0 and its last run's
// stamps count as changes from cursor 0). The A→B pump reads A's status
// but never B's cursor, and the B→A pump the cursor but never B's
// stamps: neither lag is known, and neither may have a sample. A→B's
// lag_rows used to be A's whole stamp, about 1.8e15, though B had every
// change. Once B's link heals, both show their true lag, 0.
func TestLagUnknownUntilCursorRead(t *testing.T) {
	c := newCluster(t, "A", "B")
	stop := c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	insertAll(ctx, t, c, "A", 5, func(i int) []byte { return fmt.Appendf(nil, "before %d", i) })
	c.waitConverged(ctx)
	stop()
	c.stop("A")
	c.restart("A")

	c.proxies["B"].Set(backupdtest.Cut)
	c.run(c.config())
	for counter(t, c, "twinmx_backupd_errors_total", "from", "A", "to", "B") == 0 ||
		counter(t, c, "twinmx_backupd_errors_total", "from", "B", "to", "A") == 0 {
		if ctx.Err() != nil {
			t.Fatal("no session ended with B's link cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dir := range [][]string{{"from", "A", "to", "B"}, {"from", "B", "to", "A"}} {
		for _, name := range []string{"twinmx_backupd_lag_rows", "twinmx_backupd_lag_seconds"} {
			if v, ok := series(t, c, name, dir...); ok {
				t.Errorf("%s %v before the pump read both cursor and stamps = %v, want no sample", name, dir, v)
			}
		}
	}

	c.proxies["B"].Set(backupdtest.Pass)
	for _, dir := range [][]string{{"from", "A", "to", "B"}, {"from", "B", "to", "A"}} {
		for {
			if v, ok := series(t, c, "twinmx_backupd_lag_rows", dir...); ok && v == 0 {
				break
			}
			if ctx.Err() != nil {
				v, ok := series(t, c, "twinmx_backupd_lag_rows", dir...)
				t.Fatalf("lag_rows %v after B's link healed = %v (present %v), want 0", dir, v, ok)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.waitConverged(ctx)
}

// series reads the gauge or counter name with the label pairs kv; ok is
// false if the scrape has no such sample.
func series(t *testing.T, c *cluster, name string, kv ...string) (v float64, ok bool) {
	t.Helper()
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if l[kv[i]] != kv[i+1] {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
