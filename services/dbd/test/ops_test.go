package test

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestClientReconnects: a client survives dbd being killed and restarted;
// its next request reconnects (with backoff) and succeeds.
func TestClientReconnects(t *testing.T) {
	s := newSite(t)
	s.Start()
	c := s.NewClient("admin")
	if err := c.Ping(proctest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	s.Start()
	if err := c.Ping(proctest.Ctx(t, 20*time.Second)); err != nil {
		t.Fatalf("ping after a dbd restart: %v", err)
	}
}

// TestMetricsEndpoint: dbd serves Prometheus metrics, its own and Pebble's.
func TestMetricsEndpoint(t *testing.T) {
	s := newSite(t)
	s.Addr = proctest.FreePort(t)
	metrics := proctest.FreePort(t)
	s.Log = nil
	cmd := exec.Command(filepath.Join(binDir, "dbd"), "--data", filepath.Join(s.Dir, "data"), "--listen", s.Addr,
		"--key", filepath.Join(s.Dir, "keys", "dbd"), "--clients", filepath.Join(s.Dir, "clients"), "--metrics", metrics)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Cmd = cmd
	proctest.WaitListening(t, metrics, 20*time.Second, &bytes.Buffer{})
	s.Dbctl(nil, "find-or-insert", "body", "x")
	scrape := func() string {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// dbd counts a request once its answer is sent, so the count can
	// trail the answer dbctl got by a moment.
	const counted = `twinmx_dbd_requests_total{op="find-or-insert",result="ok"} 1`
	body := scrape()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, counted) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		body = scrape()
	}
	for _, want := range []string{
		counted,
		"twinmx_dbd_commit_duration_seconds_bucket",
		"twinmx_dbd_pebble_wal_written_bytes_total",
		"twinmx_dbd_connections",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestBenchCommand: dbctl bench runs a short, bounded measurement and ends
// with the ratio line the foundation issue specifies. (Figures are not
// asserted: performance is reported, not tested by timing.)
func TestBenchCommand(t *testing.T) {
	s := newSite(t)
	out := s.Dbctl(nil, "bench", "--concurrency", "4", "--size", "512", "--duration", "300ms", "--rounds", "1", "--dir", t.TempDir())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^ratio: [0-9]+\.[0-9]+$`).MatchString(last) {
		t.Fatalf("last line %q, want \"ratio: X\"; output:\n%s", last, out)
	}
	// The wire round reports its group commits from dbd's metrics.
	if !regexp.MustCompile(`(?m)^round 1: wire find-or-insert: [0-9]+ ops/s \([0-9]+ group commits of [0-9.]+ requests`).MatchString(out) {
		t.Errorf("no group-commit figures in the wire round; output:\n%s", out)
	}
}
