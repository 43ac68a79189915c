package notify

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are smsd's Prometheus collectors. Label "kind" is "sms" or
// "forward"; "gateway" is "http", "command" or "relay".
type Metrics struct {
	Sent        *prometheus.CounterVec   // notifications delivered to the gateway or relay
	Failed      *prometheus.CounterVec   // numbers or addresses given up (after the last retry, or refused for good)
	Retries     *prometheus.CounterVec   // failed attempts that will be retried
	TakenOver   *prometheus.CounterVec   // claims of the other site taken over after the claim timeout
	Decisions   *prometheus.CounterVec   // claim decisions per row look (kind, decision)
	RateLimited prometheus.Counter       // SMS held back by the per-number limit
	Gateway     *prometheus.HistogramVec // one gateway or relay call (gateway, result)
	Pending     prometheus.Gauge         // rows waiting for a look or a retry
	Errors      *prometheus.CounterVec   // errors by stage (watch, process, missing)
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Sent: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_sent_total",
			Help: "Notifications handed to the SMS gateway or the relay, by kind (sms, forward)."}, []string{"kind"}),
		Failed: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_failed_total",
			Help: "Numbers or addresses of a mail given up after the last retry or refused for good, by kind."}, []string{"kind"}),
		Retries: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_retries_total",
			Help: "Failed gateway or relay attempts that will be retried, by kind."}, []string{"kind"}),
		TakenOver: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_claims_taken_over_total",
			Help: "Claims of the other site taken over after the claim timeout, by kind."}, []string{"kind"}),
		Decisions: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_decisions_total",
			Help: "Looks at a ready receive row, by kind and decision (nomatch, done, wait, claim, continue, takeover, lost)."}, []string{"kind", "decision"}),
		RateLimited: f.NewCounter(prometheus.CounterOpts{Name: "twinmx_smsd_rate_limited_total",
			Help: "SMS held back by the per-number rate limit."}),
		Gateway: f.NewHistogramVec(prometheus.HistogramOpts{Name: "twinmx_smsd_gateway_duration_seconds",
			Help:    "Duration of one gateway or relay call, by gateway (http, command, relay) and result (ok, error).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"gateway", "result"}),
		Pending: f.NewGauge(prometheus.GaugeOpts{Name: "twinmx_smsd_pending_rows",
			Help: "Receive rows waiting for a look, the peer delay, a claim timeout or a retry."}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_smsd_errors_total",
			Help: "Errors by stage (watch, process; missing: a mail row still missing after the last look)."}, []string{"stage"}),
	}
}
