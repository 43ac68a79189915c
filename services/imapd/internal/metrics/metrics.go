// Package metrics holds imapd's Prometheus metrics. Label values come from
// bounded sets only (command names, results, directions), never a login,
// address or IP.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics is imapd's set of collectors; safe for concurrent use.
type Metrics struct {
	SessionsActive prometheus.Gauge
	Sessions       prometheus.Counter
	Logins         *prometheus.CounterVec // result: ok, failed, refused (no TLS), error
	LoginsCached   prometheus.Counter     // successful logins whose password the login cache took
	Commands       *prometheus.CounterVec // command: select, fetch, ...; result: ok, no, error
	Bytes          *prometheus.CounterVec // direction: in, out
	Errors         *prometheus.CounterVec // kind: dbd, watch, panic, conn_limit, append_memory, append_account_memory
	FetchedMails   prometheus.Counter
	// The mail cache (internal/mailcache); kind: parsed, body.
	CacheHits      *prometheus.CounterVec
	CacheMisses    *prometheus.CounterVec
	CacheEvictions *prometheus.CounterVec
	CacheBytes     *prometheus.GaugeVec
	// Compressed counts the sessions with COMPRESS=DEFLATE active.
	Compressed prometheus.Gauge
}

// New registers imapd's metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		SessionsActive: f.NewGauge(prometheus.GaugeOpts{Name: "twinmx_imapd_sessions", Help: "IMAP connections open now."}),
		Sessions:       f.NewCounter(prometheus.CounterOpts{Name: "twinmx_imapd_sessions_total", Help: "IMAP connections accepted."}),
		Logins: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_logins_total",
			Help: "Login attempts (LOGIN, AUTHENTICATE PLAIN) by result: ok, failed, refused (plaintext without TLS), error."}, []string{"result"}),
		LoginsCached: f.NewCounter(prometheus.CounterOpts{Name: "twinmx_imapd_logins_cached_total",
			Help: "Successful logins whose password the login cache took without an argon2id check (part of logins_total{result=\"ok\"})."}),
		Commands: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_commands_total",
			Help: "Session commands by command and result (ok, no, error)."}, []string{"command", "result"}),
		Bytes: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_bytes_total",
			Help: "Bytes on IMAP connections by direction (in, out)."}, []string{"direction"}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_errors_total",
			Help: "Internal errors by kind: dbd (a storage request failed), watch (a mailbox watch broke), panic."}, []string{"kind"}),
		FetchedMails: f.NewCounter(prometheus.CounterOpts{Name: "twinmx_imapd_fetched_mails_total", Help: "Whole mails or sections sent in FETCH answers."}),
		CacheHits: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_cache_hits_total",
			Help: "Mail cache lookups that found an entry, by kind (parsed: structure for listings; body: whole mails)."}, []string{"kind"}),
		CacheMisses: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_cache_misses_total",
			Help: "Mail cache lookups that found nothing, by kind (parsed, body)."}, []string{"kind"}),
		CacheEvictions: f.NewCounterVec(prometheus.CounterOpts{Name: "twinmx_imapd_cache_evictions_total",
			Help: "Mail cache entries dropped to stay within the byte budget, by kind (parsed, body)."}, []string{"kind"}),
		CacheBytes: f.NewGaugeVec(prometheus.GaugeOpts{Name: "twinmx_imapd_cache_bytes",
			Help: "Estimated heap bytes the mail cache keeps, by kind (parsed, body)."}, []string{"kind"}),
		Compressed: f.NewGauge(prometheus.GaugeOpts{Name: "twinmx_imapd_compressed_sessions",
			Help: "IMAP connections with COMPRESS=DEFLATE active now (each holds about 0.8 MiB for its deflater)."}),
	}
}
