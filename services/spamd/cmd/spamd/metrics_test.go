package main

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

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

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"twinmx_spamd_decisions_total", "twinmx_spamd_decide_seconds", "twinmx_spamd_errors_total",
		"twinmx_spamd_digests_sent_total", "twinmx_spamd_digest_errors_total"} {
		if !names[n] {
			t.Errorf("%s not exported", n)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: only promlint ran")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = &text
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
