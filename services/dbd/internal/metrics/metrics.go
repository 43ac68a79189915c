// Package metrics defines dbd's Prometheus metrics. Metrics are built on an
// injected registerer (never the global one), so tests and several dbds in
// one process do not collide. Label values come from bounded sets only
// (operation, result, reason, role, table), never a key or an address.
package metrics

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// DBD holds dbd's metrics. The zero value is not usable; use New.
type DBD struct {
	Requests          *prometheus.CounterVec   // op, result
	RequestSeconds    *prometheus.HistogramVec // op
	BytesIn, BytesOut prometheus.Counter
	Connections       prometheus.Gauge
	ConnectionsTotal  prometheus.Counter
	HandshakeFailures *prometheus.CounterVec // reason
	ClientKeyNotAfter *prometheus.GaugeVec   // role
	Streams           *prometheus.GaugeVec   // op
	CommitSeconds     prometheus.Histogram
	CommitGroup       prometheus.Histogram
	CommitBytes       prometheus.Counter
	Panics            prometheus.Counter
}

// New registers dbd's metrics on reg.
func New(reg prometheus.Registerer) *DBD {
	f := promauto.With(reg)
	return &DBD{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_dbd_requests_total",
			Help: "Requests answered, by operation and result (ok, not-found, or an error code).",
		}, []string{"op", "result"}),
		RequestSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "twinmx_dbd_request_duration_seconds",
			Help:    "Time from a request's last frame to its answer (streams: to the first event).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"op"}),
		BytesIn: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_dbd_received_bytes_total", Help: "Decrypted request bytes received.",
		}),
		BytesOut: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_dbd_sent_bytes_total", Help: "Answer bytes sent before encryption.",
		}),
		Connections: f.NewGauge(prometheus.GaugeOpts{
			Name: "twinmx_dbd_connections", Help: "Authenticated connections open now.",
		}),
		ConnectionsTotal: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_dbd_connections_total", Help: "Authenticated connections accepted.",
		}),
		HandshakeFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "twinmx_dbd_handshake_failures_total",
			Help: "Handshakes refused, by reason (unknown-key, clock-skew, replay, decrypt, timeout, ...).",
		}, []string{"reason"}),
		ClientKeyNotAfter: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "twinmx_dbd_client_key_not_after_timestamp_seconds",
			Help: "The soonest not-after (Unix time) among the role's listed client keys that have not expired; absent for a role without one.",
		}, []string{"role"}),
		Streams: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "twinmx_dbd_streams", Help: "Watch and changes streams open now.",
		}, []string{"op"}),
		CommitSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "twinmx_dbd_commit_duration_seconds",
			Help:    "Duration of one synced group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		CommitGroup: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "twinmx_dbd_commit_group_requests",
			Help:    "Requests committed together by one fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		CommitBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_dbd_commit_content_bytes_total", Help: "Content bytes committed.",
		}),
		Panics: f.NewCounter(prometheus.CounterOpts{
			Name: "twinmx_dbd_panics_total", Help: "Panics recovered while serving a request (each is a bug).",
		}),
	}
}

// OnCommit records one group commit; it fits store.Options.OnCommit.
func (m *DBD) OnCommit(requests, bytes int, d time.Duration) {
	m.CommitSeconds.Observe(d.Seconds())
	m.CommitGroup.Observe(float64(requests))
	m.CommitBytes.Add(float64(bytes))
}

// L6Filters exports whether dbd's lookups of new rows use the bottom
// level's bloom filters; used reports it (store.Store.L6Filters).
func L6Filters(used func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "twinmx_dbd_l6_filters_used",
		Help: "1 while lookups of new rows use the bottom level's bloom filters; 0 once the filters no longer fit half the block cache (raise dbd --cache).",
	}, func() float64 {
		if used() {
			return 1
		}
		return 0
	})
}

// RowCache exports the row cache's figures (store.Store.RowCacheStats):
// lookups that found their row and those that went to Pebble, and the
// bytes of values held.
func RowCache(stats func() (hits, misses uint64, bytes int)) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "twinmx_dbd_row_cache_hits_total",
			Help: "Reads of a mail's rows (op mail, op mails) answered from the row cache.",
		}, func() float64 { h, _, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "twinmx_dbd_row_cache_misses_total",
			Help: "Reads of a mail's rows (op mail, op mails) that went to Pebble.",
		}, func() float64 { _, m, _ := stats(); return float64(m) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "twinmx_dbd_row_cache_bytes",
			Help: "Bytes of row values the row cache holds (at most dbd --row-cache).",
		}, func() float64 { _, _, b := stats(); return float64(b) }),
	}
}

// Armed exports how armed requests (wire op arm) ended
// (store.Store.ArmStats): met when they arrived (at_once: a group commit
// of their own), fired by a later change in that change's commit (fired),
// or withdrawn unfired (withdrawn). smtpd arms every acknowledgement; a
// rising share of at_once means its arms come too late to share the
// verdict's fsync.
func Armed(stats func() (atOnce, fired, withdrawn uint64)) []prometheus.Collector {
	const help = "Armed requests by how they ended: at_once (met on arrival), fired (by a later change, in its commit), withdrawn (deadline or caller gone)."
	one := func(how string, pick func(a, f, w uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "twinmx_dbd_armed_total", Help: help, ConstLabels: prometheus.Labels{"how": how},
		}, func() float64 { return float64(pick(stats())) })
	}
	return []prometheus.Collector{
		one("at_once", func(a, _, _ uint64) uint64 { return a }),
		one("fired", func(_, f, _ uint64) uint64 { return f }),
		one("withdrawn", func(_, _, w uint64) uint64 { return w }),
	}
}

// PebbleCollector exports Pebble's own figures (from DB.Metrics) at scrape
// time.
type PebbleCollector struct {
	metrics func() *pebble.Metrics
	descs   map[string]*prometheus.Desc
}

// NewPebbleCollector returns a collector reading figures from metrics.
func NewPebbleCollector(metrics func() *pebble.Metrics) *PebbleCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("twinmx_dbd_pebble_"+name, help, nil, nil)
	}
	return &PebbleCollector{metrics: metrics, descs: map[string]*prometheus.Desc{
		"wal_bytes":         d("wal_bytes", "Bytes in live WAL files."),
		"wal_written":       d("wal_written_bytes_total", "Bytes written to the WAL."),
		"disk_space":        d("disk_space_usage_bytes", "Disk space used by the store."),
		"compactions":       d("compactions_total", "Compactions run."),
		"flushes":           d("flushes_total", "Memtable flushes."),
		"memtable":          d("memtable_bytes", "Bytes in memtables."),
		"read_amp":          d("read_amplification", "Read amplification."),
		"cache_hits":        d("block_cache_hits_total", "Block cache hits."),
		"cache_misses":      d("block_cache_misses_total", "Block cache misses."),
		"compaction_debt":   d("compaction_debt_bytes", "Estimated bytes to compact to reach a stable shape."),
		"table_count_total": d("sstables", "Number of sstables."),
		"blob_bytes":        d("blob_bytes", "Bytes in live blob files (content chunks kept out of compactions)."),
		"blob_garbage":      d("blob_garbage_bytes", "Value bytes in live blob files that no key references any more."),
	}}
}

// Describe implements prometheus.Collector.
func (c *PebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PebbleCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics()
	if m == nil {
		return
	}
	g := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v)
	}
	ctr := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v)
	}
	g("wal_bytes", float64(m.WAL.Size))
	ctr("wal_written", float64(m.WAL.BytesWritten))
	g("disk_space", float64(m.DiskSpaceUsage()))
	ctr("compactions", float64(m.Compact.Count))
	ctr("flushes", float64(m.Flush.Count))
	g("memtable", float64(m.MemTable.Size))
	g("read_amp", float64(m.ReadAmp()))
	ctr("cache_hits", float64(m.BlockCache.Hits))
	ctr("cache_misses", float64(m.BlockCache.Misses))
	g("compaction_debt", float64(m.Compact.EstimatedDebt))
	g("table_count_total", float64(m.Total().TablesCount))
	g("blob_bytes", float64(m.BlobFiles.LiveSize))
	g("blob_garbage", float64(m.BlobFiles.ValueSize-min(m.BlobFiles.ReferencedValueSize, m.BlobFiles.ValueSize)))
}
