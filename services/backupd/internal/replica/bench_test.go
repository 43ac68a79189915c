package replica_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
)

// direct is the cluster's config without the proxies (one hop less).
func (c *cluster) direct() replica.Config {
	cfg := c.config()
	for i, n := range c.names {
		cfg.Sites[i].Addr = c.envs[n].Addr
	}
	return cfg
}

// arrivals watches every row of table t at a site and records when each
// key first arrives.
func arrivals(ctx context.Context, tb testing.TB, c *client.Client, t model.Table) (map[model.Key]time.Time, *sync.Mutex, func() int) {
	st, err := c.Watch(ctx, t, nil, false)
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[model.Key]time.Time{}
	go func() {
		defer st.Close()
		for {
			r, err := st.Next(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			if _, ok := seen[r.Key]; !ok {
				seen[r.Key] = now
			}
			mu.Unlock()
		}
	}()
	return seen, &mu, func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkLag inserts TWINMX_BENCH_RATE rows/s (default 1000) of 1 KiB
// at A for TWINMX_BENCH_SECONDS (default 5) and reports the rows/s
// replicated into B and the lag from A's acknowledgement to the row's
// arrival in a watch at B (p50, p99, max). Run it once:
//
//	go test -run '^$' -bench Lag -benchtime 1x ./services/backupd/internal/replica/
func BenchmarkLag(b *testing.B) {
	rate, secs := envInt("TWINMX_BENCH_RATE", 1000), envInt("TWINMX_BENCH_SECONDS", 5)
	c := newCluster(b, "A", "B")
	c.run(c.direct())
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	seen, seenMu, count := arrivals(ctx, b, c.admin("B"), model.Text)
	n := rate * secs
	acks := make([]time.Time, n)
	keys := make([]model.Key, n)
	const workers = 16
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.admin("A")
			for i := w; i < n; i += workers {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				content := fmt.Appendf(nil, "bench row %d %x", i, make([]byte, 500))
				keys[i] = model.KeyOf(model.Text, content)
				if _, _, err := cl.FindOrInsert(ctx, model.Text, content); err != nil {
					b.Error(err)
					return
				}
				acks[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	insertDone := time.Now()
	for count() < n && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	seenMu.Lock()
	lags := make([]time.Duration, 0, n)
	last := start
	for i := range n {
		at, ok := seen[keys[i]]
		if !ok {
			continue
		}
		if at.After(last) {
			last = at
		}
		lags = append(lags, max(at.Sub(acks[i]), 0))
	}
	seenMu.Unlock()
	slices.Sort(lags)
	if len(lags) < n {
		b.Fatalf("%d of %d rows arrived at B", len(lags), n)
	}
	pct := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(n)/insertDone.Sub(start).Seconds(), "inserted-rows/s")
	b.ReportMetric(float64(n)/last.Sub(start).Seconds(), "replicated-rows/s")
	b.ReportMetric(pct(0.5), "lag-p50-ms")
	b.ReportMetric(pct(0.99), "lag-p99-ms")
	b.ReportMetric(pct(1), "lag-max-ms")
}

// BenchmarkCeiling measures one backupd's throughput ceiling: it loads
// TWINMX_BENCH_ROWS rows (default 50000) of TWINMX_BENCH_SIZE bytes
// (default 1024) at A with backupd stopped, then starts backupd and times
// until every row has arrived at B.
//
//	go test -run '^$' -bench Ceiling -benchtime 1x ./services/backupd/internal/replica/
func BenchmarkCeiling(b *testing.B) {
	n, size := envInt("TWINMX_BENCH_ROWS", 50000), envInt("TWINMX_BENCH_SIZE", 1024)
	c := newCluster(b, "A", "B")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := c.admin("A")
	pad := make([]byte, max(size-24, 0))
	for i := 0; i < n; i += 1000 {
		var reqs []wire.Request
		for j := i; j < min(n, i+1000); j++ {
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: fmt.Appendf(nil, "ceiling %d %s", j, pad)})
		}
		if _, err := cl.Batch(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	_, _, count := arrivals(ctx, b, c.admin("B"), model.Text)
	start := time.Now()
	c.run(c.direct())
	for count() < n && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(n)/el, "rows/s")
	b.ReportMetric(float64(n*size)/el/(1<<20), "MiB/s")
}
