package replica_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestMetrics: after a mail is replicated and marked, the figures say so,
// and every metric passes the promtool lint (promlint).
func TestMetrics(t *testing.T) {
	c := newCluster(t, "A", "B")
	c.run(c.config())
	ctx := ctxT(t, 30*time.Second)
	m := backupdtest.NewMail(7, "carol@example.org")
	if _, err := c.smtpd("A").Batch(ctx, m.Batch()); err != nil {
		t.Fatal(err)
	}
	if err := backupdtest.WaitMark(ctx, c.smtpd("A"), m); err != nil {
		t.Fatal(err)
	}
	// The counter rises just after the marks are acknowledged, which is
	// when smtpd's watch may already fire.
	for markedCount(t, c) < 1 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	proctest.LintMetrics(t, c.reg, "twinmx_backupd_lag_rows", "twinmx_backupd_lag_seconds", "twinmx_backupd_merged_rows_total",
		"twinmx_backupd_merged_bytes_total", "twinmx_backupd_marked_mails_total")
	// One series per direction: the marks set at B travel back to A.
	out, err := testutil.GatherAndCount(c.reg, "twinmx_backupd_merged_rows_total")
	if err != nil || out != 2 {
		t.Errorf("merged rows series = %d, %v; want one per direction", out, err)
	}
}

// markedCount reads twinmx_backupd_marked_mails_total.
func markedCount(t *testing.T, c *cluster) float64 {
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "twinmx_backupd_marked_mails_total" {
			v = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return v
}
