package test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestBenchSMTP is the benchmark of issue 3, run by
// deploy/bench/smtp-bench.sh (TWINMX_BENCH=1), never by `make test`.
// In one run, alternating rounds, the same load against three servers:
//
//  1. smtpd: the full path to 250 (dbd, verdicts preset by `dbctl
//     autoverdict accept`, --min-copies 1);
//  2. Postfix's own smtpd accepting into its queue (a private instance,
//     every mail put on hold: written and fsynced, never delivered);
//  3. smtp-sink, the protocol ceiling.
//
// Loads: Postfix's smtp-source (-s 20 -l 10240 -m N, a new connection per
// mail; its mails share one body), then a Go client with 20 sessions and a
// distinct 10 kB body per mail that times each end of DATA to its reply.
// Last, 100 concurrent Go client sessions against smtpd (its peak RSS)
// and against Postfix.
//
// TWINMX_BENCH_MAILS sets N (default 5000), TWINMX_BENCH_ROUNDS the rounds
// (default 2).
func TestBenchSMTP(t *testing.T) {
	if os.Getenv("TWINMX_BENCH") == "" {
		t.Skip("benchmark: set TWINMX_BENCH=1 (deploy/bench/smtp-bench.sh)")
	}
	requirePostfix(t)
	requireTool(t, smtpSource)
	n := envInt("TWINMX_BENCH_MAILS", 5000)
	rounds := envInt("TWINMX_BENCH_ROUNDS", 2)
	const (
		sessions = 20
		size     = 10240
		rcpt     = "bench@twinmx.test"
	)

	s := newSite(t)
	// TWINMX_BENCH_DBD_FLAGS adds dbd flags (e.g. --metrics HOST:PORT, to
	// read its commit figures during a run).
	s.Flags = append(s.Flags, strings.Fields(os.Getenv("TWINMX_BENCH_DBD_FLAGS"))...)
	s.Start()
	s.addMailbox(rcpt)
	filter := s.autoverdict("accept")
	// TWINMX_BENCH_SMTPD_FLAGS adds smtpd flags and TWINMX_BENCH_SMTPD_ENV
	// smtpd's environment (NAME=VALUE ...), for A/B runs of a knob.
	d := s.startSMTPD(smtpdOptions{MinCopies: 1, Metrics: true, Hostname: "bench.twinmx.test",
		Extra: append([]string{"--max-conns-per-ip", "-1"}, strings.Fields(os.Getenv("TWINMX_BENCH_SMTPD_FLAGS"))...),
		Env:   strings.Fields(os.Getenv("TWINMX_BENCH_SMTPD_ENV"))})
	pf := newPostfix(t, postfixConfig{Hold: true, Main: map[string]string{"myhostname": "postfix.bench.test"}})
	sk := startSink(t, 256)
	targets := []struct{ name, addr string }{{"smtpd", d.addr}, {"postfix", pf.addr}, {"smtp-sink", sk.addr}}

	// Warm up each (first connections, Postfix's process pool, dbd's
	// caches), unmeasured.
	for _, tg := range targets {
		if _, err := runSource(tg.addr, sessions, size, 200, rcpt); err != nil {
			t.Fatalf("warm-up of %s: %v", tg.name, err)
		}
	}

	// CPU time of smtpd, its dbd and the stand-in filter during the
	// smtp-source runs against smtpd, and of Postfix (its master and every
	// process under it) during those against Postfix.
	ours := newCPUMeter(t, proc("smtpd", d.Cmd), proc("dbd", s.Cmd), proc("filter", filter))
	theirs := newCPUMeter(t, postfixProc(pf))
	m0 := scrapeMetrics(t, d.metrics) // smtpd's allocations, below
	meters := map[string]*cpuMeter{"smtpd": ours, "postfix": theirs}

	source := map[string][]float64{}
	goRate := map[string][]float64{}
	lat := map[string][]time.Duration{}
	for r := 0; r < rounds; r++ {
		for _, tg := range targets {
			var el time.Duration
			var err error
			run := func() { el, err = runSource(tg.addr, sessions, size, n, rcpt) }
			if m := meters[tg.name]; m != nil {
				m.measure(n, run)
			} else {
				run()
			}
			if err != nil {
				t.Fatalf("smtp-source against %s: %v", tg.name, err)
			}
			source[tg.name] = append(source[tg.name], float64(n)/el.Seconds())
		}
		// smtpd again, every verdict written before the mail arrives.
		tag := fmt.Sprintf("r%d-preset", r)
		presetAccept(t, s, rcpt, tag, n/2, size)
		rate, ls, codes, err := runGoClient(d.addr, sessions, size, n/2, rcpt, tag)
		if err != nil || codes["250 2.0.0"] != n/2 {
			t.Fatalf("Go client against smtpd with preset verdicts: replies %v, %v", codes, err)
		}
		goRate["smtpd-preset"] = append(goRate["smtpd-preset"], rate)
		lat["smtpd-preset"] = append(lat["smtpd-preset"], ls...)
		for _, tg := range targets {
			rate, ls, codes, err := runGoClient(tg.addr, sessions, size, n/2, rcpt, fmt.Sprintf("r%d-%s", r, tg.name))
			if err != nil || codes["250 2.0.0"] != n/2 {
				t.Fatalf("Go client against %s: replies %v, %v", tg.name, codes, err)
			}
			goRate[tg.name] = append(goRate[tg.name], rate)
			lat[tg.name] = append(lat[tg.name], ls...)
		}
	}

	// Every mail smtpd got must have been answered 250.
	m := scrapeMetrics(t, d.metrics)
	t.Logf("smtpd transactions: 250 ×%.0f, 451 ×%.0f, 550 ×%.0f, other ×%.0f",
		m[`twinmx_smtpd_transactions_total{outcome="250"}`], m[`twinmx_smtpd_transactions_total{outcome="451"}`],
		m[`twinmx_smtpd_transactions_total{outcome="550"}`], m[`twinmx_smtpd_transactions_total{outcome="other"}`])
	var mails float64
	for _, o := range []string{"250", "451", "550", "other"} {
		series := `twinmx_smtpd_transactions_total{outcome="` + o + `"}`
		mails += m[series] - m0[series]
	}
	t.Logf("smtpd allocated %.1f kB a mail, %.0f collections (Go runtime metrics, all of the runs above)",
		(m["go_memstats_alloc_bytes_total"]-m0["go_memstats_alloc_bytes_total"])/1e3/max(mails, 1),
		m["go_gc_duration_seconds_count"]-m0["go_gc_duration_seconds_count"])

	var b strings.Builder
	fmt.Fprintf(&b, "\n%d rounds; mails/s, median of rounds (each round's figure in brackets)\n", rounds)
	fmt.Fprintf(&b, "%-10s %28s %28s %12s %12s\n", "server", fmt.Sprintf("smtp-source -s %d -l %d -m %d", sessions, size, n),
		fmt.Sprintf("Go client %d sessions", sessions), "p50 EOD→reply", "p99 EOD→reply")
	for _, tg := range targets {
		p50, p99 := quantile(lat[tg.name], 0.5), quantile(lat[tg.name], 0.99)
		fmt.Fprintf(&b, "%-10s %8.0f %-19s %8.0f %-19s %12s %12s\n", tg.name,
			median(source[tg.name]), fmtRounds(source[tg.name]), median(goRate[tg.name]), fmtRounds(goRate[tg.name]),
			p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
	}
	pp50, pp99 := quantile(lat["smtpd-preset"], 0.5), quantile(lat["smtpd-preset"], 0.99)
	fmt.Fprintf(&b, "%-10s %8s %-19s %8.0f %-19s %12s %12s   (verdict written before the mail arrives)\n", "smtpd*", "", "",
		median(goRate["smtpd-preset"]), fmtRounds(goRate["smtpd-preset"]), pp50.Round(10*time.Microsecond), pp99.Round(10*time.Microsecond))
	ratio := func(a, c string, f map[string][]float64) float64 { return median(f[a]) / median(f[c]) }
	fmt.Fprintf(&b, "smtp-source: smtpd/postfix %.2f×, smtpd/smtp-sink %.2f×, postfix/smtp-sink %.2f×\n",
		ratio("smtpd", "postfix", source), ratio("smtpd", "smtp-sink", source), ratio("postfix", "smtp-sink", source))
	fmt.Fprintf(&b, "Go client:   smtpd/postfix %.2f×, smtpd*/postfix %.2f×, smtpd/smtp-sink %.2f×, postfix/smtp-sink %.2f×\n",
		ratio("smtpd", "postfix", goRate), ratio("smtpd-preset", "postfix", goRate), ratio("smtpd", "smtp-sink", goRate),
		ratio("postfix", "smtp-sink", goRate))
	fmt.Fprintf(&b, "CPU per mail, smtp-source: twinmx %s; Postfix %s (Postfix ÷ twinmx %.2f)\n",
		ours, theirs, float64(theirs.perMail())/float64(ours.perMail()))
	printAcks(t, &b, d.metrics)
	p50, p99 := histQuantile(m, "twinmx_smtpd_decision_seconds", 0.5), histQuantile(m, "twinmx_smtpd_decision_seconds", 0.99)
	fmt.Fprintf(&b, "smtpd's own decision histogram (end of DATA to reply, all loads): p50 ≈ %.1f ms, p99 ≈ %.1f ms\n", p50*1000, p99*1000)

	// Latency at low load: one session, one mail at a time, so the reply
	// waits for the commits on the mail's own path and nothing else.
	for _, tg := range []struct{ name, addr string }{{"smtpd", d.addr}, {"postfix", pf.addr}} {
		_, ls, codes, err := runGoClient(tg.addr, 1, size, 300, rcpt, "lat-"+tg.name)
		if err != nil || codes["250 2.0.0"] != 300 {
			t.Fatalf("one session against %s: replies %v, %v", tg.name, codes, err)
		}
		fmt.Fprintf(&b, "one session, 300 mails, %-8s EOD→reply p50 %s, p99 %s\n", tg.name+":",
			quantile(ls, 0.5).Round(10*time.Microsecond), quantile(ls, 0.99).Round(10*time.Microsecond))
	}

	// Peak memory under 100 concurrent sessions (Go client: it counts
	// the replies instead of stopping at the first temporary failure).
	idle := peakRSS(t, d.Cmd.Process.Pid)
	rate, ls, codes, err := runGoClient(d.addr, 100, size, 3000, rcpt, "rss")
	if err != nil {
		t.Errorf("100 sessions against smtpd: %v", err)
	}
	peak := peakRSS(t, d.Cmd.Process.Pid)
	fmt.Fprintf(&b, "smtpd under 100 concurrent sessions, 3000 mails: %.0f mails/s, p50 %s, p99 %s, replies %v\n",
		rate, quantile(ls, 0.5).Round(10*time.Microsecond), quantile(ls, 0.99).Round(10*time.Microsecond), codes)
	prate, pls, pcodes, err := runGoClient(pf.addr, 100, size, 3000, rcpt, "rss-postfix")
	if err != nil {
		t.Errorf("100 sessions against Postfix: %v", err)
	}
	fmt.Fprintf(&b, "Postfix, the same:                               %.0f mails/s, p50 %s, p99 %s, replies %v (smtpd/postfix %.2f×)\n",
		prate, quantile(pls, 0.5).Round(10*time.Microsecond), quantile(pls, 0.99).Round(10*time.Microsecond), pcodes, rate/prate)
	fmt.Fprintf(&b, "smtpd peak RSS (VmHWM): %.1f MiB before, %.1f MiB after the 100 sessions\n",
		float64(idle)/(1<<20), float64(peak)/(1<<20))
	t.Log(b.String())
	fmt.Print(b.String())
}

// printAcks writes how smtpd's acknowledgements were made: armed (in the
// commit of the deciding verdict or mark) or after the decision.
func printAcks(t testing.TB, b *strings.Builder, metrics string) {
	m := scrapeMetrics(t, metrics)
	fmt.Fprintf(b, "smtpd acknowledgements: armed %.0f, after the decision %.0f\n",
		m[`twinmx_smtpd_acks_total{how="armed"}`], m[`twinmx_smtpd_acks_total{how="after"}`])
}

// runSource runs smtp-source; it exits non-zero if any mail is not
// answered 2xx.
func runSource(addr string, sessions, size, n int, rcpt string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(smtpSource, "-s", strconv.Itoa(sessions), "-l", strconv.Itoa(size), "-m", strconv.Itoa(n),
		"-f", "source@bench.test", "-t", rcpt, addr).CombinedOutput()
	el := time.Since(start)
	if err != nil {
		return el, fmt.Errorf("%v: %s", err, out)
	}
	return el, nil
}

// runGoClient sends n distinct mails of about size bytes over sessions
// parallel sessions (a new one every 50 mails) and returns the rate of
// 250 replies (mails/s), for each 250 the time from writing the end of its
// data to the reply, and the count of each end-of-data reply ("250 2.0.0").
func runGoClient(addr string, sessions, size, n int, rcpt, tag string) (float64, []time.Duration, map[string]int, error) {
	var mu sync.Mutex
	codes := map[string]int{}
	var lats []time.Duration
	var firstErr error
	work := make(chan int, n)
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtpConn
			sent := 0
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			for i := range work {
				if c == nil || sent%50 == 0 {
					if c != nil {
						c.cmd("QUIT")
						c.close()
					}
					var r reply
					var err error
					if c, r, err = dialSMTP(addr, 60*time.Second); err != nil {
						fail(err)
						return
					}
					if r, err = c.cmd("EHLO go.bench.test"); err != nil || r.Code != 250 {
						fail(fmt.Errorf("EHLO: %v %v", r, err))
						return
					}
				}
				sent++
				msg := benchMail(rcpt, tag, i, size)
				for _, cmd := range []string{"MAIL FROM:<go@bench.test>", "RCPT TO:<" + rcpt + ">", "DATA"} {
					if r, err := c.cmd("%s", cmd); err != nil || r.Code >= 400 {
						fail(fmt.Errorf("%s: %v %v", cmd, r, err))
						return
					}
				}
				payload := dotStuff(msg)
				// The whole payload in one write (loopback), so the clock
				// starts at the end of DATA.
				t0 := time.Now()
				if err := c.write(payload); err != nil {
					fail(err)
					return
				}
				r, err := c.read()
				d := time.Since(t0)
				if err != nil {
					fail(fmt.Errorf("end of data: %v", err))
					return
				}
				mu.Lock()
				codes[strconv.Itoa(r.Code)+" "+strings.SplitN(r.Text, " ", 2)[0]]++
				if r.Code == 250 {
					lats = append(lats, d)
				}
				mu.Unlock()
			}
			if c != nil {
				c.cmd("QUIT")
				c.close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	return float64(len(lats)) / el.Seconds(), lats, codes, firstErr
}

// scrapeMetrics reads a Prometheus text endpoint into name{labels} → value.
func scrapeMetrics(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// histQuantile estimates quantile q of a Prometheus histogram without
// labels from its cumulative buckets, interpolating within a bucket.
func histQuantile(m map[string]float64, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+`_bucket{le="`)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].n
	lo, prev := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lo
			}
			return lo + (b.le-lo)*(rank-prev)/math.Max(b.n-prev, 1)
		}
		lo, prev = b.le, b.n
	}
	return lo
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRounds(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchMail is mail i of the Go client's load tag: about size bytes, its
// body distinct from every other mail's.
func benchMail(rcpt, tag string, i, size int) []byte {
	const line = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
	return []byte(fmt.Sprintf("From: go@bench.test\r\nTo: %s\r\nSubject: bench %s %d\r\nMessage-ID: <%s.%d@go.bench.test>\r\n\r\n%d %s\r\n%s",
		rcpt, tag, i, tag, i, i, tag, strings.Repeat(line, size/len(line))))
}

// presetAccept writes, before the mails are sent, an accept verdict on the
// receive rows that mails 0..n-1 of load tag will have: the verdict is
// known when smtpd stores the mail (as for a retry of a decided mail).
func presetAccept(t testing.TB, s *site, rcpt, tag string, n, size int) {
	t.Helper()
	ctx := proctest.Ctx(t, 2*time.Minute)
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))
	val := model.EncodeVerdict(model.SourceFilter, model.Epoch(time.Now()), model.Accept)
	var reqs []wire.Request
	flush := func() {
		if _, err := s.Client().Batch(ctx, reqs); err != nil {
			t.Fatalf("preset verdicts: %v", err)
		}
		reqs = reqs[:0]
	}
	for i := 0; i < n; i++ {
		c := model.ReceiveContent(model.NewMailRows(benchMail(rcpt, tag, i, size)).MailKey, mb)
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: c},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{Content: c}, Name: model.ColVerdict, Value: val})
		if len(reqs) >= 200 {
			flush()
		}
	}
	if len(reqs) > 0 {
		flush()
	}
}

// cpuMeter sums the CPU time some processes use during measured runs.
type cpuMeter struct {
	t     testing.TB
	procs []cpuProc
	used  []time.Duration
	mails int
}

// cpuProc names a process and reads its CPU time so far.
type cpuProc struct {
	name string
	read func() (time.Duration, error)
}

// proc reads the CPU time of the process cmd started.
func proc(name string, cmd *exec.Cmd) cpuProc {
	pid := cmd.Process.Pid
	return cpuProc{name, func() (time.Duration, error) { return proctest.CPUTime(pid) }}
}

// postfixProc reads the CPU time of Postfix's master and every process
// under it, those that ended meanwhile included (a Postfix smtpd exits
// after 100 clients).
func postfixProc(pf *postfix) cpuProc {
	return cpuProc{"all processes", func() (time.Duration, error) { return proctest.TreeCPUTime(pf.masterPID()) }}
}

func newCPUMeter(t testing.TB, procs ...cpuProc) *cpuMeter {
	return &cpuMeter{t: t, procs: procs, used: make([]time.Duration, len(procs))}
}

func (m *cpuMeter) now() []time.Duration {
	out := make([]time.Duration, len(m.procs))
	for i, p := range m.procs {
		d, err := p.read()
		if err != nil {
			m.t.Fatalf("CPU time of %s: %v", p.name, err)
		}
		out[i] = d
	}
	return out
}

// measure runs run, which handles mails, and adds the CPU time used.
func (m *cpuMeter) measure(mails int, run func()) {
	before := m.now()
	run()
	for i, d := range m.now() {
		m.used[i] += d - before[i]
	}
	m.mails += mails
}

// perMail is the CPU time of all the processes per mail.
func (m *cpuMeter) perMail() time.Duration {
	var sum time.Duration
	for _, d := range m.used {
		sum += d
	}
	return sum / time.Duration(max(m.mails, 1))
}

// String gives each process's CPU time per mail, then their sum.
func (m *cpuMeter) String() string {
	parts := make([]string, len(m.procs))
	for i, p := range m.procs {
		parts[i] = fmt.Sprintf("%s %d", p.name, (m.used[i] / time.Duration(max(m.mails, 1))).Microseconds())
	}
	if len(parts) == 1 {
		return parts[0] + " µs"
	}
	return fmt.Sprintf("%s = %d µs", strings.Join(parts, " + "), m.perMail().Microseconds())
}
