package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

func TestPromlint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	// Every vector needs a child to be gathered.
	m.Logins.WithLabelValues("ok").Inc()
	m.Commands.WithLabelValues("select", "ok").Inc()
	m.Bytes.WithLabelValues("in").Inc()
	m.Errors.WithLabelValues("dbd").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 7 {
		t.Fatalf("gathered %d metric families, want 7", len(mfs))
	}
	proctest.LintMetrics(t, reg)
}
