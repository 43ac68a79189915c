package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/spamd/internal/digest"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
)

// TestMetricsLint: spamd's /metrics as runDaemon registers it (the judge's
// and the digest's metrics, the Go and process collectors) passes
// promtool's lint, through promlint and, when installed, `promtool check
// metrics` itself.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	jm := judge.NewMetrics(reg)
	dm := digest.NewMetrics(reg)
	jm.Decisions.WithLabelValues("accept").Inc()
	jm.DecideSeconds.Observe(0.001)
	jm.Errors.WithLabelValues("watch").Inc()
	dm.Errors.WithLabelValues("send").Inc()

	proctest.LintMetrics(t, reg, "twinmx_spamd_decisions_total", "twinmx_spamd_decide_seconds", "twinmx_spamd_errors_total",
		"twinmx_spamd_digests_sent_total", "twinmx_spamd_digest_errors_total")
}
