package digest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the digest's Prometheus figures.
type Metrics struct {
	Sent    prometheus.Counter     // digests handed to smtpd
	Allowed prometheus.Counter     // senders allowed by replies
	Errors  *prometheus.CounterVec // by op: pass, send
}

// NewMetrics registers the digest's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_spamd_digests_sent_total", Help: "Rejection digests handed to smtpd.",
		}),
		Allowed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_spamd_digest_allowed_total", Help: "Senders put on an allow list by a reply to a digest.",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_spamd_digest_errors_total", Help: "Digest failures, by operation (pass, send).",
		}, []string{"op"}),
	}
	reg.MustRegister(m.Sent, m.Allowed, m.Errors)
	return m
}
