package metrics

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestLint: dbd's /metrics as the daemon registers it (its own metrics,
// Pebble's figures of a real store, the Go and process collectors) passes
// promtool's lint, through promlint and, when installed, `promtool check
// metrics` itself.
func TestLint(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := New(reg)
	reg.MustRegister(NewPebbleCollector(db.Metrics), L6Filters(func() bool { return true }))
	reg.MustRegister(RowCache(func() (uint64, uint64, int) { return 3, 1, 4096 })...)
	reg.MustRegister(Armed(func() (uint64, uint64, uint64) { return 1, 5, 2 })...)
	m.Requests.WithLabelValues("find", "ok").Inc()
	m.RequestSeconds.WithLabelValues("find").Observe(0.001)
	m.HandshakeFailures.WithLabelValues("unknown-key").Inc()
	m.Streams.WithLabelValues("watch").Set(1)
	m.OnCommit(3, 100, time.Millisecond)

	proctest.LintMetrics(t, reg, "twinmx_dbd_requests_total", "twinmx_dbd_commit_duration_seconds", "twinmx_dbd_pebble_disk_space_usage_bytes",
		"twinmx_dbd_pebble_compaction_debt_bytes", "twinmx_dbd_l6_filters_used", "twinmx_dbd_row_cache_hits_total", "twinmx_dbd_row_cache_bytes", "twinmx_dbd_armed_total", "process_start_time_seconds")
}

// TestArmed: each end of an armed request is its own series of one
// counter.
func TestArmed(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Armed(func() (uint64, uint64, uint64) { return 1, 5, 2 })...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				got[mf.GetName()+"/"+l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{"twinmx_dbd_armed_total/at_once": 1, "twinmx_dbd_armed_total/fired": 5, "twinmx_dbd_armed_total/withdrawn": 2}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
