package judge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the judge's Prometheus figures.
type Metrics struct {
	Decisions     *prometheus.CounterVec // by verdict
	DecideSeconds prometheus.Histogram
	Errors        *prometheus.CounterVec // by op
}

// NewMetrics registers the judge's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_spamd_decisions_total", Help: "Verdicts written, by verdict.",
		}, []string{"verdict"}),
		DecideSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "twinmx_spamd_decide_seconds", Help: "Time to decide one mail for one mailbox (classifier and policy; reads and DNS excluded).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_spamd_errors_total", Help: "Failures, by operation (watch, judge).",
		}, []string{"op"}),
	}
	reg.MustRegister(m.Decisions, m.DecideSeconds, m.Errors)
	return m
}
