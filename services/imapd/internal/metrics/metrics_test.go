package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
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
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
