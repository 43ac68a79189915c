// Package metrics holds smtpd's Prometheus collectors. One *Metrics is made
// per running smtpd and registered on its own registry (no global state).
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are smtpd's collectors. Names follow Prometheus conventions
// (twinmx_smtpd_ prefix, _total for counters, base units).
type Metrics struct {
	Sessions       prometheus.Counter
	SessionsActive prometheus.Gauge
	Transactions   *prometheus.CounterVec // by outcome: 250, 451, 550, other
	Decision       prometheus.Histogram   // end of DATA to reply, seconds
	Bytes          prometheus.Counter     // message bytes received
	Rejections     *prometheus.CounterVec // by reason
	DBErrors       *prometheus.CounterVec // by operation
	Acks           *prometheus.CounterVec // acknowledgements by how: armed (in the verdict's commit) or after (a batch after the decision)
	Panics         prometheus.Counter     // panics go-smtp recovered from while serving a session
}

// New makes the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_smtpd_sessions_total", Help: "SMTP sessions started (connections handed to the protocol).",
		}),
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "twinmx_smtpd_sessions_active", Help: "SMTP sessions open now.",
		}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_smtpd_transactions_total", Help: "Mail transactions that reached the end of DATA, by reply code class (250, 451, 550, other).",
		}, []string{"outcome"}),
		Decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "twinmx_smtpd_decision_seconds",
			Help:    "Time from the end of DATA to the reply: storing, waiting for verdict and backup, acknowledging.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 20, 30},
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_smtpd_message_bytes_total", Help: "Bytes of message data received (after dot-unstuffing).",
		}),
		Rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_smtpd_rejections_total", Help: "Commands and mails refused, by reason.",
		}, []string{"reason"}),
		DBErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_smtpd_dbd_errors_total", Help: "Failed requests to dbd, by operation.",
		}, []string{"op"}),
		Acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_smtpd_acks_total", Help: "Mails acknowledged for a 250, by how: armed (dbd applied the acknowledgement in the commit of the deciding verdict) or after (smtpd sent it after the decision: a dbd without arm, or a mixed outcome).",
		}, []string{"how"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_smtpd_panics_total", Help: "Panics recovered while serving a session (each is a bug; the session got 421).",
		}),
	}
	reg.MustRegister(m.Sessions, m.SessionsActive, m.Transactions, m.Decision, m.Bytes, m.Rejections, m.DBErrors, m.Acks, m.Panics)
	return m
}

// Outcome returns the transactions label for an SMTP reply code.
func Outcome(code int) string {
	switch code {
	case 250, 451, 550:
		return strconv.Itoa(code)
	}
	return "other"
}
