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
	m.CacheHits.WithLabelValues("parsed").Inc()
	m.CacheMisses.WithLabelValues("parsed").Inc()
	m.CacheEvictions.WithLabelValues("parsed").Inc()
	m.CacheBytes.WithLabelValues("parsed").Set(1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 13 {
		t.Fatalf("gathered %d metric families, want 13", len(mfs))
	}
	proctest.LintMetrics(t, reg)
}
