package ctl

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// commitStats are dbd's group-commit counters at one moment.
type commitStats struct {
	groups, requests float64 // fsynced groups and the requests in them
	seconds          float64 // summed time from a group's apply to its fsync's end
}

// since describes the group commits between s0 and s over a phase of
// length d: how many requests shared an fsync, how long a group took, and
// for what share of the phase a group was on its way to disk. The rest of
// the time the writer had nothing to sync: the requests were on their way
// through the network and the processes.
func (s commitStats) since(s0 commitStats, d time.Duration) string {
	g := s.groups - s0.groups
	if g <= 0 {
		return "no group commits"
	}
	busy := (s.seconds - s0.seconds) / d.Seconds()
	return fmt.Sprintf("%.0f group commits of %.1f requests, %.2f ms each, a group in progress %.0f%% of the time",
		g, (s.requests-s0.requests)/g, (s.seconds-s0.seconds)/g*1000, 100*min(busy, 1))
}

// commits reads the group-commit histograms from dbd's /metrics.
func (e *benchEnv) commits(ctx context.Context) (commitStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.metrics+"/metrics", nil)
	if err != nil {
		return commitStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return commitStats{}, fmt.Errorf("read dbd's metrics: %w", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return commitStats{}, fmt.Errorf("parse dbd's metrics: %w", err)
	}
	var st commitStats
	if f := fams["twinmx_dbd_commit_group_requests"]; f != nil && len(f.Metric) == 1 {
		st.groups = float64(f.Metric[0].GetHistogram().GetSampleCount())
		st.requests = f.Metric[0].GetHistogram().GetSampleSum()
	}
	if f := fams["twinmx_dbd_commit_duration_seconds"]; f != nil && len(f.Metric) == 1 {
		st.seconds = f.Metric[0].GetHistogram().GetSampleSum()
	}
	return st, nil
}

// freeLoopbackAddr returns a loopback address whose port was free a
// moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
