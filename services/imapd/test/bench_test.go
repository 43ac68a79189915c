package test

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// benchScript logs in (and with a sixth argument "compress" turns on
// COMPRESS=DEFLATE), selects INBOX read-only, prints "ready" and waits
// for a line on stdin (so the servers' CPU time can be read before the
// FETCH), fetches the items in argv[5] of every mail in one UID FETCH,
// prints "mails seconds bytes wire" (bytes: of the literals; wire: the
// compressed bytes read, 0 without COMPRESS), then waits for a line on
// stdin again (so the server's memory and CPU time can be read while the
// session is open) and logs out.
const benchScript = pyDeflated + `
import re, sys, time
host, port, user, pw, items = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
compress = len(sys.argv) > 6 and sys.argv[6] == "compress"
m = Deflated(host, port)
m.login(user, pw)
if compress:
    assert b"COMPRESS=DEFLATE" in m.capability()[1][0], m.capability()
    m.start_compress()
m.select("INBOX", readonly=True)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
wire0 = m.wire if compress else 0
typ, data = m.uid("FETCH", "1:*", items)
dt = time.monotonic() - t0
n = sum(1 for x in data if re.match(rb"\d+ \(", x[0] if isinstance(x, tuple) else x))
size = sum(len(x[1]) for x in data if isinstance(x, tuple))
print(n, dt, size, (m.wire - wire0) if compress else 0, flush=True)
sys.stdin.readline()
m.logout()
`

// TestBenchFetchVsDovecot (TWINMX_BENCH=1): FETCH BODY[] of 1,000 corpus
// mails from our imapd and from Dovecot over a Maildir of the same mails,
// same client (imaplib, one UID FETCH 1:*). Reports mails/s and the peak
// RSS of the serving process (imapd; Dovecot's imap process).
func TestBenchFetchVsDovecot(t *testing.T) {
	if os.Getenv("TWINMX_BENCH") == "" {
		t.Skip("set TWINMX_BENCH=1 to run the benchmark")
	}
	// TWINMX_BENCH_CLIENT=lean: the lean Go client (leanclient_test.go)
	// instead of Python's imaplib.
	lean := false
	switch c := os.Getenv("TWINMX_BENCH_CLIENT"); c {
	case "", "python":
	case "lean":
		lean = true
	default:
		t.Fatalf("TWINMX_BENCH_CLIENT=%q: want python or lean", c)
	}
	var py string
	if !lean {
		py = need(t, "python3", "python3")
	}
	needDovecot(t)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("TWINMX_BENCH_MAILS")); err == nil && v > 0 {
		n = v
	}
	corpus := loadCorpus(t)
	if len(corpus) > n {
		corpus = corpus[:n]
	}
	s := newSiteWith(t, siteOptions{flags: []string{"--compress-sessions", "4"}, deployed: true})
	s.deliver(corpus)
	host, port, _ := strings.Cut(s.imapAddr, ":")
	ourSrv := server{
		rss: func() int64 {
			rss, err := proctest.PeakRSS(s.imapd.Cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			return rss
		},
		cpu: func() map[string]time.Duration {
			return map[string]time.Duration{"imapd": cpuTime(t, s.imapd.Cmd.Process.Pid), "dbd": cpuTime(t, s.Cmd.Process.Pid)}
		},
	}
	const body, headers = "(BODY.PEEK[])", "(FLAGS ENVELOPE BODYSTRUCTURE)"
	// Thunderbird's listing: header fields, size and flags, no structure.
	const fields = "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"
	// run times one UID FETCH 1:* of items; mode "compress" turns on
	// COMPRESS=DEFLATE first.
	run := func(host, port, user, pw, items, mode string, srv server) benchResult {
		t.Helper()
		if lean {
			return benchRunLean(t, host, port, user, pw, items, mode, srv)
		}
		return benchRunPython(t, py, host, port, user, pw, items, mode, srv)
	}
	ours := run(host, port, login, password, body, "plain", ourSrv)

	// Dovecot over a Maildir holding the same mails.
	dc := startDovecot(t, corpus)
	dhost, dport, _ := strings.Cut(dc.addr, ":")
	theirSrv := server{
		rss: func() int64 { return imapProcessRSS(t) },
		cpu: func() map[string]time.Duration {
			var sum time.Duration
			for _, pid := range imapProcesses(t) {
				sum += cpuTime(t, pid)
			}
			return map[string]time.Duration{"imap": sum}
		},
	}
	theirs := run(dhost, dport, dc.user, dc.pass, body, "plain", theirSrv)
	// The same FETCH again in a new session: now dbd's block cache holds
	// what the first one read (Dovecot's mails were in the page cache
	// both times), which shows how much of dbd's cost is cold reads.
	oursWarm := run(host, port, login, password, body, "plain", ourSrv)
	theirsWarm := run(dhost, dport, dc.user, dc.pass, body, "plain", theirSrv)
	// BODY[] again with COMPRESS=DEFLATE, dbd's cache warm: Dovecot's
	// imap_zlib at its default level (6) against imapd's level 1.
	oursZ := run(host, port, login, password, body, "compress", ourSrv)
	theirsZ := run(dhost, dport, dc.user, dc.pass, body, "compress", theirSrv)
	// Thunderbird's listing, before any other listing: imapd's mail
	// cache holds nothing of these mails yet (BODY[] does not fill it).
	oursFields := run(host, port, login, password, fields, "plain", ourSrv)
	theirsFields := run(dhost, dport, dc.user, dc.pass, fields, "plain", theirSrv)
	// What a client fetches to list the folder (mutt, Thunderbird).
	oursHdr := run(host, port, login, password, headers, "plain", ourSrv)
	theirsHdr := run(dhost, dport, dc.user, dc.pass, headers, "plain", theirSrv)
	// The listing again, as when the client opens the folder the next
	// time: imapd's mail cache (if any) now holds every mail's structure.
	oursHdr2 := run(host, port, login, password, headers, "plain", ourSrv)
	theirsHdr2 := run(dhost, dport, dc.user, dc.pass, headers, "plain", theirSrv)

	client := "Python imaplib"
	if lean {
		client = "the lean Go client"
	}
	t.Logf("FETCH BODY[] of %d mails (%d MB), %s:", ours.mails, ours.bytes>>20, client)
	t.Logf("  twinmx imapd: %.0f mails/s (%.2fs), peak RSS %d MiB", float64(ours.mails)/ours.secs, ours.secs, ours.rss>>20)
	t.Logf("  dovecot:      %.0f mails/s (%.2fs), peak RSS %d MiB (imap process)", float64(theirs.mails)/theirs.secs, theirs.secs, theirs.rss>>20)
	t.Logf("  ratio twinmx/dovecot: speed %.2f, RSS %.2f", theirs.secs/ours.secs, float64(ours.rss)/float64(max(theirs.rss, 1)))
	t.Logf("  CPU during the FETCH: twinmx %s; dovecot %s", ours.cpuText(), theirs.cpuText())
	t.Logf("  CPU after the SELECT, before the FETCH (the servers left to idle; imapd's first listing places every mail, and dbd flushes and compacts those rows): twinmx %s; dovecot %s",
		durations(ours.settle), durations(theirs.settle))
	t.Logf("  again, dbd's cache warm: twinmx %.0f mails/s, dovecot %.0f mails/s, ratio %.2f; CPU twinmx %s; dovecot %s",
		float64(oursWarm.mails)/oursWarm.secs, float64(theirsWarm.mails)/theirsWarm.secs, theirsWarm.secs/oursWarm.secs,
		oursWarm.cpuText(), theirsWarm.cpuText())
	t.Logf("  with COMPRESS=DEFLATE, dbd's cache warm: twinmx %.0f mails/s, %.1f %% of the bytes on the wire; dovecot %.0f mails/s, %.1f %%; ratio %.2f; CPU twinmx %s; dovecot %s",
		float64(oursZ.mails)/oursZ.secs, 100*float64(oursZ.wire)/float64(oursZ.bytes), float64(theirsZ.mails)/theirsZ.secs,
		100*float64(theirsZ.wire)/float64(theirsZ.bytes), theirsZ.secs/oursZ.secs, oursZ.cpuText(), theirsZ.cpuText())
	t.Logf("FETCH (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (…)]) of %d mails, imapd's cache cold: twinmx %.0f mails/s, dovecot %.0f mails/s, ratio %.2f; CPU twinmx %s; dovecot %s",
		oursFields.mails, float64(oursFields.mails)/oursFields.secs, float64(theirsFields.mails)/theirsFields.secs, theirsFields.secs/oursFields.secs,
		oursFields.cpuText(), theirsFields.cpuText())
	t.Logf("FETCH (FLAGS ENVELOPE BODYSTRUCTURE) of %d mails: twinmx %.0f mails/s, dovecot %.0f mails/s, ratio %.2f; CPU twinmx %s; dovecot %s",
		oursHdr.mails, float64(oursHdr.mails)/oursHdr.secs, float64(theirsHdr.mails)/theirsHdr.secs, theirsHdr.secs/oursHdr.secs,
		oursHdr.cpuText(), theirsHdr.cpuText())
	t.Logf("FETCH (FLAGS ENVELOPE BODYSTRUCTURE) again: twinmx %.0f mails/s, dovecot %.0f mails/s, ratio %.2f; CPU twinmx %s; dovecot %s; peak RSS imapd %d MiB",
		float64(oursHdr2.mails)/oursHdr2.secs, float64(theirsHdr2.mails)/theirsHdr2.secs, theirsHdr2.secs/oursHdr2.secs,
		oursHdr2.cpuText(), theirsHdr2.cpuText(), oursHdr2.rss>>20)
	for _, r := range []benchResult{ours, theirs, oursWarm, theirsWarm, oursZ, theirsZ, oursFields, theirsFields, oursHdr, theirsHdr, oursHdr2, theirsHdr2} {
		if r.mails != len(corpus) {
			t.Fatalf("fetched %d mails in a run, want %d", r.mails, len(corpus))
		}
	}
	// Both servers send every mail whole with CRLF line ends, so every
	// BODY[] run must have read the same literal bytes.
	for _, r := range []benchResult{theirs, oursWarm, theirsWarm, oursZ, theirsZ} {
		if r.bytes != ours.bytes {
			t.Fatalf("BODY[] runs read %d and %d bytes of literals, want the same", ours.bytes, r.bytes)
		}
	}
}

type benchResult struct {
	mails int
	secs  float64
	bytes int64
	wire  int64 // compressed bytes read (COMPRESS=DEFLATE runs)
	rss   int64
	cpu   map[string]time.Duration // CPU time used during the FETCH, by process
	// settle is the CPU time the servers used between the end of the
	// SELECT and the start of the FETCH (see settle), by process.
	settle map[string]time.Duration
}

// settle waits until the processes cpu reads have used less than 2 ms of
// CPU in 100 ms, at most 15 s, and returns what they used meanwhile
// (the client's share is left out: it only waits).
func settle(t *testing.T, cpu func() map[string]time.Duration) map[string]time.Duration {
	t.Helper()
	start := cpu()
	prev := start
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cur := cpu()
		var used time.Duration
		for name, d := range cur {
			if name != "client" {
				used += d - prev[name]
			}
		}
		prev = cur
		if used < 2*time.Millisecond {
			break
		}
	}
	out := map[string]time.Duration{}
	for name, d := range prev {
		if name != "client" {
			out[name] = d - start[name]
		}
	}
	return out
}

func (r benchResult) cpuText() string { return durations(r.cpu) }

func durations(m map[string]time.Duration) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.3fs", name, m[name].Seconds()))
	}
	return strings.Join(parts, ", ")
}

// server reads the serving processes' peak RSS and CPU times.
type server struct {
	rss func() int64
	cpu func() map[string]time.Duration
}

func cpuTime(t *testing.T, pid int) time.Duration {
	d, err := proctest.CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// benchRunPython times one UID FETCH 1:* of items with Python's imaplib
// (benchScript); mode "compress" turns on COMPRESS=DEFLATE.
func benchRunPython(t *testing.T, py, host, port, user, pw, items, mode string, srv server) benchResult {
	t.Helper()
	ctx := proctest.Ctx(t, 10*time.Minute)
	cmd := exec.CommandContext(ctx, py, "-c", benchScript, host, port, user, pw, items, mode)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("bench client said %q: %v\n%s", line, err, errb.String())
	}
	cpu := func() map[string]time.Duration {
		m := srv.cpu()
		m["client"] = cpuTime(t, cmd.Process.Pid)
		return m
	}
	// The SELECT may leave work behind: imapd's first listing of a folder
	// writes a placement row a mail, and dbd flushes and compacts them in
	// the background. That is the SELECT's cost, not the FETCH's; it is
	// measured apart (settle) and the FETCH starts once the servers idle.
	var r benchResult
	r.settle = settle(t, cpu)
	before := cpu()
	in.Write([]byte("\n"))
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("bench client: %v\n%s", err, errb.String())
	}
	if _, err := fmt.Sscan(line, &r.mails, &r.secs, &r.bytes, &r.wire); err != nil {
		t.Fatalf("bench client said %q: %v", line, err)
	}
	r.cpu = cpu()
	for name := range r.cpu {
		r.cpu[name] -= before[name]
	}
	r.rss = srv.rss()
	in.Write([]byte("\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bench client: %v\n%s", err, errb.String())
	}
	return r
}

// imapProcessRSS returns the largest peak RSS of Dovecot's "imap"
// processes (one per session).
func imapProcessRSS(t *testing.T) int64 {
	var best int64
	for _, pid := range imapProcesses(t) {
		if rss, err := proctest.PeakRSS(pid); err == nil {
			best = max(best, rss)
		}
	}
	return best
}

// imapProcesses lists the pids of Dovecot's "imap" processes.
func imapProcesses(t *testing.T) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == "imap" {
			pids = append(pids, pid)
		}
	}
	return pids
}
