package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestLint: every smtpd metric passes promtool's lint (promlint), with each
// labelled metric given a sample so it is exported.
func TestLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Transactions.WithLabelValues(Outcome(250)).Inc()
	m.Rejections.WithLabelValues("spam").Inc()
	m.DBErrors.WithLabelValues("store").Inc()
	m.Decision.Observe(0.01)
	proctest.LintMetrics(t, reg)
	if n := testutil.CollectAndCount(reg); n != 8 {
		t.Errorf("%d metrics, want 8", n)
	}
}

func TestOutcome(t *testing.T) {
	for code, want := range map[int]string{250: "250", 451: "451", 550: "550", 552: "other", 421: "other"} {
		if got := Outcome(code); got != want {
			t.Errorf("Outcome(%d) = %q, want %q", code, got, want)
		}
	}
}
