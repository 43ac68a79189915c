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
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
	"github.com/twinmx/twinmx/services/dbd/proctest"
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
	keys := make([]model.Key, n)
	start := time.Now()
	acks := paced(b, n, rate, func() *client.Client { return c.admin("A") }, func(cl *client.Client, i int) error {
		content := fmt.Appendf(nil, "bench row %d %x", i, make([]byte, 500))
		keys[i] = model.KeyOf(model.Text, content)
		_, _, err := cl.FindOrInsert(ctx, model.Text, content)
		return err
	})
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

// BenchmarkMarkMails stores TWINMX_BENCH_RATE mails/s (default 500) at A
// for TWINMX_BENCH_SECONDS (default 5), each as smtpd stores it (one
// batch: a 10 kB body, header, mail, receive, received and msgid rows),
// from 16 writers, and waits until every receive row at A carries the
// backed-up mark. It reports the CPU time of the whole test process (both
// dbds and backupd) per mail, the marker's rounds, and the time from
// A's acknowledgement to the mark at A (p50, p99). Each mail has a body
// of its own (distinct), or all share one (shared, as smtp-source's
// mails do). Run it once:
//
//	go test -run '^$' -bench MarkMails -benchtime 1x ./services/backupd/internal/replica/
func BenchmarkMarkMails(b *testing.B) {
	b.Run("distinct", func(b *testing.B) { benchMarkMails(b, false) })
	b.Run("shared", func(b *testing.B) { benchMarkMails(b, true) })
}

func benchMarkMails(b *testing.B, shared bool) {
	rate, secs := envInt("TWINMX_BENCH_RATE", 500), envInt("TWINMX_BENCH_SECONDS", 5)
	c := newCluster(b, "A", "B")
	c.run(c.direct())
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	st, err := c.admin("A").Watch(ctx, model.Receive, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	markedAt := map[model.Key]time.Time{}
	go func() {
		for {
			r, err := st.Next(ctx)
			if err != nil {
				return
			}
			if r.State.Col(model.ColBackedUp) >= model.FlagSet {
				mu.Lock()
				if _, ok := markedAt[r.Key]; !ok {
					markedAt[r.Key] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()
	n := rate * secs
	keys := make([]model.Key, n)
	body := make([]byte, 10240)
	for i := range body {
		body[i] = 'a' + byte(i%26)
		if i%78 == 77 {
			body[i] = '\n'
		}
	}
	before, err := proctest.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	acks := paced(b, n, rate, func() *client.Client { return c.smtpd("A") }, func(cl *client.Client, i int) error {
		tag := i
		if shared {
			tag = 0
		}
		raw := fmt.Appendf(nil, "Received: from x by y; %d\r\nMessage-ID: <%d@bench>\r\nSubject: bench %d\r\n\r\n%d %s", i, i, i, tag, body)
		mr := model.NewMailRows(raw)
		recv := model.ReceiveContent(mr.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent("bench@example.org")))
		m := backupdtest.Mail{Rows: mr, Recv: recv, RecvKey: model.KeyOf(model.Receive, recv)}
		keys[i] = m.RecvKey
		_, err := cl.Batch(ctx, m.Batch())
		return err
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(markedAt) }
	for count() < n && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	after, err := proctest.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	if count() < n {
		b.Fatalf("%d of %d mails marked at A", count(), n)
	}
	mu.Lock()
	lags := make([]time.Duration, 0, n)
	for i := range n {
		lags = append(lags, max(markedAt[keys[i]].Sub(acks[i]), 0))
	}
	mu.Unlock()
	slices.Sort(lags)
	pct := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64((after-before).Microseconds())/float64(n), "cpu-µs/mail")
	b.ReportMetric(gathered(b, c, "twinmx_backupd_mark_rounds_total"), "mark-rounds")
	b.ReportMetric(pct(0.5), "mark-p50-ms")
	b.ReportMetric(pct(0.99), "mark-p99-ms")
}

// gathered reads a counter of the cluster's replicator.
func gathered(tb testing.TB, c *cluster, name string) float64 {
	mfs, err := c.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// paced calls do for i in [0, n), each at start + i/rate, spread over 16
// goroutines with a client each from newClient, and returns when each
// call returned. acks[i] is when call i returned (zero after an error,
// which fails b).
func paced(b *testing.B, n, rate int, newClient func() *client.Client, do func(cl *client.Client, i int) error) (acks []time.Time) {
	const workers = 16
	acks = make([]time.Time, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient()
			for i := w; i < n; i += workers {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				if err := do(cl, i); err != nil {
					b.Error(err)
					return
				}
				acks[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	return acks
}
