package replica

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are backupd's Prometheus figures. Labels from and to are site
// names (a bounded, configured set); stage is one of the constants below.
type metrics struct {
	mergedRows   *prometheus.CounterVec
	mergedBytes  *prometheus.CounterVec
	merges       *prometheus.CounterVec
	badRows      *prometheus.CounterVec
	errors       *prometheus.CounterVec
	reconnects   *prometheus.CounterVec
	marked       prometheus.Counter
	markRounds   prometheus.Counter
	markErrors   *prometheus.CounterVec
	pending      prometheus.Gauge
	markDuration prometheus.Histogram
}

// Error stages (label values of twinmx_backupd_errors_total).
const (
	stageConnect = "connect" // reading the cursor, opening the stream
	stageStream  = "stream"  // reading the changes stream
	stageMerge   = "merge"
	stageLive    = "heartbeat" // a dbd stopped answering
)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	dir := []string{"from", "to"}
	return &metrics{
		mergedRows: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_merged_rows_total",
			Help: "Rows merged into the destination site (including rows that changed nothing there).",
		}, dir),
		mergedBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_merged_bytes_total",
			Help: "Content bytes merged into the destination site.",
		}, dir),
		merges: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_merges_total",
			Help: "Merge requests (one atomic batch with the cursor) acknowledged by the destination site.",
		}, dir),
		badRows: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_bad_rows_total",
			Help: "Rows the destination refused as invalid or too large; they are skipped and logged.",
		}, dir),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_errors_total",
			Help: "Errors that ended a pump's session, by stage (connect, stream, merge, heartbeat).",
		}, []string{"from", "to", "stage"}),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_reconnects_total",
			Help: "Sessions a pump opened after the first (each one after an error).",
		}, dir),
		marked: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_backupd_marked_mails_total",
			Help: "Mails (receive rows) marked backed up by this backupd.",
		}),
		markRounds: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_backupd_mark_rounds_total",
			Help: "Rounds of presence checks for receive rows waiting for their backed-up mark.",
		}),
		markErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_backupd_mark_errors_total",
			Help: "Failed presence checks or mark batches, by site.",
		}, []string{"site"}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "twinmx_backupd_unmarked_mails",
			Help: "Receive rows seen by backupd and not yet marked backed up (not yet on enough sites).",
		}),
		markDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "twinmx_backupd_mark_round_seconds",
			Help:    "Duration of one round of presence checks and marks over every site.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
}
