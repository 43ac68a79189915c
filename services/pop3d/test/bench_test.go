package test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestBenchDovecot compares pop3d with Dovecot's POP3 server: the whole
// corpus in a twinmx mailbox and in a Maildir for Dovecot, then one Go
// client RETRs every mail from each, twice (the second round is
// reported: warm caches on both sides), checking each mail against the
// corpus. It prints mails/s, peak RSS and the ratios. It runs only with
// TWINMX_BENCH set, as root with dovecot-pop3d installed
// (deploy/bench/pop3-bench.sh). It asserts nothing about speed.
func TestBenchDovecot(t *testing.T) {
	if os.Getenv("TWINMX_BENCH") == "" {
		t.Skip("set TWINMX_BENCH=1 (deploy/bench/pop3-bench.sh) to run the Dovecot comparison")
	}
	dovecot := requireTool(t, "dovecot", "dovecot-pop3d")
	if os.Getuid() != 0 {
		t.Skip("the Dovecot comparison runs as root (dovecot needs it)")
	}
	corpus := loadCorpus(t)
	mails := make([][]byte, len(corpus))
	for i, m := range corpus {
		mails[i] = m.raw
	}

	// twinmx.
	s := newDeployedSite(t, "A")
	s.user("bench", "bench password", "bench@twinmx.test")
	deliverAll(t, s, "bench@twinmx.test", mails)
	p := s.startPOP3D("")
	var ours result
	var allocated, gcs float64 // by pop3d in the last round, from its metrics
	for range 2 {
		a0, g0 := metricFloat(t, p.metrics, "go_memstats_alloc_bytes_total"), metricFloat(t, p.metrics, "go_gc_duration_seconds_count")
		ours = retrieveAll(t, p.addr, "bench", "bench password", len(mails), func() []time.Duration {
			return []time.Duration{cpuTime(t, p.Cmd.Process.Pid), cpuTime(t, s.Cmd.Process.Pid)}
		})
		allocated = metricFloat(t, p.metrics, "go_memstats_alloc_bytes_total") - a0
		gcs = metricFloat(t, p.metrics, "go_gc_duration_seconds_count") - g0
	}
	oursRSS, _ := proctest.PeakRSS(p.Cmd.Process.Pid)
	dbdRSS, _ := proctest.PeakRSS(s.Cmd.Process.Pid)

	// Dovecot, with the same mails in a Maildir (LF line ends, as Maildir
	// keeps them; Dovecot sends CRLF). It checks the same kind of hash as
	// pop3d (argon2id, 64 MiB, 2 passes; libsodium reads the PHC string
	// passwd writes), so the logins cost alike.
	lfMails := make([][]byte, len(mails))
	for i, m := range mails {
		lfMails[i] = lf(m)
	}
	hash, err := passwd.Hash("bench", passwd.Default)
	if err != nil {
		t.Fatal(err)
	}
	addr, dc := proctest.Dovecot{Bin: dovecot, Protocol: "pop3", Mails: lfMails,
		Passwd: "bench:{ARGON2ID}" + hash + "\n",
		Extra:  "default_login_user = nobody\ndefault_internal_user = nobody\n"}.Start(t)
	var theirs result
	for range 2 {
		theirs = retrieveAll(t, addr, "bench", "bench", len(mails), func() []time.Duration {
			return []time.Duration{treeCPU(dc.Process.Pid)}
		})
	}
	theirsRSS := treeRSS(dc.Process.Pid)

	t.Logf("corpus: %d mails, %d octets", len(mails), ours.octets)
	t.Logf("twinmx pop3d: %.0f mails/s (%.1f MB/s) STAT to QUIT, login %s (%.0f mails/s with it); peak RSS pop3d %.1f MiB, dbd %.1f MiB",
		ours.rate(), ours.mbps(), ours.login.Round(time.Millisecond), ours.sessionRate(), mib(oursRSS), mib(dbdRSS))
	t.Logf("dovecot:      %.0f mails/s (%.1f MB/s) STAT to QUIT, login %s (%.0f mails/s with it); peak RSS (all dovecot processes) %.1f MiB",
		theirs.rate(), theirs.mbps(), theirs.login.Round(time.Millisecond), theirs.sessionRate(), mib(theirsRSS))
	t.Logf("CPU from STAT to the last RETR: twinmx pop3d+dbd %.2fs (%.0f µs/mail: pop3d %.0f, dbd %.0f), dovecot %.2fs (%.0f µs/mail)",
		ours.cpuSum().Seconds(), ours.perMail(ours.cpuSum()), ours.perMail(ours.cpu[0]), ours.perMail(ours.cpu[1]),
		theirs.cpuSum().Seconds(), theirs.perMail(theirs.cpuSum()))
	t.Logf("pop3d allocated %.1f kB a mail (login included), %.0f collections", allocated/1e3/float64(ours.mails), gcs)
	t.Logf("ratio twinmx/dovecot: throughput %.2f (with the logins %.2f); RSS pop3d %.2f, pop3d+dbd %.2f",
		ours.rate()/theirs.rate(), ours.sessionRate()/theirs.sessionRate(),
		float64(oursRSS)/float64(theirsRSS), float64(oursRSS+dbdRSS)/float64(theirsRSS))
}

// result is one retrieval. el runs from the authenticated session's
// STAT to QUIT's reply, what "RETR of the corpus" measures; login
// (connect, USER, PASS: the password check and the maildrop's opening)
// is reported apart.
type result struct {
	mails  int
	octets int64
	login  time.Duration
	el     time.Duration
	cpu    []time.Duration // each server process's CPU time (pop3d's, then dbd's, for twinmx) from STAT to the last RETR
}

func (r result) cpuSum() time.Duration {
	var sum time.Duration
	for _, c := range r.cpu {
		sum += c
	}
	return sum
}

// metricFloat reads the metric series at addr's /metrics.
func metricFloat(t *testing.T, addr, series string) float64 {
	t.Helper()
	v, err := metricValue(addr, series)
	if err != nil {
		t.Fatalf("metric %s: %v", series, err)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("metric %s: %q: %v", series, v, err)
	}
	return f
}

// perMail gives d in µs a mail.
func (r result) perMail(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(r.mails) }

func (r result) rate() float64 { return float64(r.mails) / r.el.Seconds() }
func (r result) mbps() float64 { return float64(r.octets) / r.el.Seconds() / 1e6 }

// sessionRate counts the login in.
func (r result) sessionRate() float64 { return float64(r.mails) / (r.login + r.el).Seconds() }

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// retrieveAll logs in and RETRs every mail once, in message-number order.
// cpu reads the server processes' CPU times, before STAT and after the
// last RETR.
func retrieveAll(t *testing.T, addr, user, pass string, want int, cpu func() []time.Duration) result {
	t.Helper()
	start := time.Now()
	c := mustPOP(t, addr, user, pass)
	login := time.Since(start)
	cpu0 := cpu()
	start = time.Now()
	l, err := c.cmd("STAT")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.Fields(l)[1])
	if n != want {
		t.Fatalf("%s: STAT %q, want %d mails", addr, l, want)
	}
	var octets int64
	for i := 1; i <= n; i++ {
		b, err := c.retr(i)
		if err != nil {
			t.Fatalf("%s: RETR %d: %v", addr, i, err)
		}
		octets += int64(len(b))
	}
	used := cpu() // before QUIT: Dovecot's session process ends with it
	for i := range used {
		used[i] -= cpu0[i]
	}
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
	return result{mails: n, octets: octets, login: login, el: time.Since(start), cpu: used}
}

// treeRSS sums the peak RSS of pid and its descendants.
func treeRSS(pid int) int64 {
	var sum int64
	for _, p := range proctest.Tree(pid) {
		if n, err := proctest.PeakRSS(p); err == nil {
			sum += n
		}
	}
	return sum
}

// treeCPU is the CPU time used so far by pid and its descendants (0 if
// it cannot be read).
func treeCPU(pid int) time.Duration {
	d, _ := proctest.TreeCPUTime(pid)
	return d
}

func cpuTime(t *testing.T, pid int) time.Duration {
	d, err := proctest.CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
