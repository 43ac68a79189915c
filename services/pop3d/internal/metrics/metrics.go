// Package metrics holds pop3d's Prometheus collectors. One *Metrics is made
// per running pop3d and registered on an injected registry (no global
// state). Every label takes its values from a small fixed set.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// Login results (label "result" of LoginsTotal).
const (
	LoginOK      = "ok"      // authenticated
	LoginFailed  = "failed"  // wrong login or password
	LoginRefused = "refused" // not tried: too many failures from the IP, or plaintext without TLS
	LoginError   = "error"   // dbd could not be asked
)

// Error kinds (label "kind" of Errors).
const (
	ErrorDB       = "dbd"      // a dbd request failed
	ErrorPanic    = "panic"    // a recovered panic (a bug)
	ErrorProtocol = "protocol" // a malformed, unknown or out-of-state command
	ErrorTimeout  = "timeout"  // idle timeout
	ErrorIO       = "io"       // the connection broke mid-response
)

// Metrics are pop3d's collectors; safe for concurrent use.
type Metrics struct {
	Sessions       prometheus.Counter
	SessionsActive prometheus.Gauge
	Logins         *prometheus.CounterVec // by result
	LoginsCached   prometheus.Counter     // successful logins whose password the login cache took
	Commands       *prometheus.CounterVec // by command (a known verb or "unknown")
	BytesSent      prometheus.Counter     // message octets sent by RETR and TOP
	Errors         *prometheus.CounterVec // by kind
}

// New makes the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Sessions: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_pop3d_sessions_total", Help: "POP3 connections accepted (both listeners).",
		}),
		SessionsActive: f.NewGauge(prometheus.GaugeOpts{
			Name: "twinmx_pop3d_sessions_active", Help: "POP3 connections open now.",
		}),
		Logins: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_pop3d_logins_total", Help: "Login attempts (USER/PASS and AUTH PLAIN) by result: ok, failed, refused, error.",
		}, []string{"result"}),
		LoginsCached: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_pop3d_logins_cached_total", Help: "Successful logins whose password the login cache took without an argon2id check (part of logins_total{result=\"ok\"}).",
		}),
		Commands: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_pop3d_commands_total", Help: "Commands received, by command (unknown for anything else).",
		}, []string{"command"}),
		BytesSent: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_pop3d_message_bytes_total", Help: "Message octets sent by RETR and TOP (after LF to CRLF, before dot-stuffing).",
		}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_pop3d_errors_total", Help: "Errors by kind: dbd, panic, protocol, timeout, io.",
		}, []string{"kind"}),
	}
}

// Command returns the commands label for a verb: the verb if pop3d knows
// it, else "unknown", so the label set stays bounded.
func Command(v pop3.Verb) string {
	for _, k := range pop3.Verbs {
		if v == k {
			return string(v)
		}
	}
	return "unknown"
}
