package metrics

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
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
	reg.MustRegister(NewPebbleCollector(db.Metrics))
	m.Requests.WithLabelValues("find", "ok").Inc()
	m.RequestSeconds.WithLabelValues("find").Observe(0.001)
	m.HandshakeFailures.WithLabelValues("unknown-key").Inc()
	m.Streams.WithLabelValues("watch").Set(1)
	m.OnCommit(3, 100, time.Millisecond)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"twinmx_dbd_requests_total", "twinmx_dbd_commit_duration_seconds", "twinmx_dbd_pebble_disk_space_usage_bytes",
		"twinmx_dbd_pebble_compaction_debt_bytes", "process_start_time_seconds"} {
		if !names[n] {
			t.Errorf("%s not exported", n)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: only promlint ran")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = &text
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
