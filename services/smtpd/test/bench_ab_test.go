package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestBenchSMTPDAB compares two smtpd builds like with like: both run
// against one dbd and one stand-in filter, and smtp-source (20 sessions,
// 10 kB mails) goes to each in turn, round after round, with the order
// swapped every round. It prints each round's CPU a mail of the smtpd,
// its dbd and the filter, and the totals. On a machine shared with other
// work the CPU of one build swings by half from one run of
// deploy/bench/smtp-bench.sh to the next; here both builds see the same
// dbd, store and neighbours.
//
// TWINMX_BENCH_AB_OLD names the other smtpd binary ("old"; build it with
// `go build -o DIR/smtpd ./cmd/smtpd` in the other checkout); "new" is
// this checkout's. TWINMX_BENCH_AB_NEW_ENV adds NAME=VALUE ... to the new
// one's environment (the same build against itself with a runtime
// setting, say). TWINMX_BENCH_MAILS (3000) and TWINMX_BENCH_ROUNDS (6).
// Run it as the bench script runs its tests, under the same lock:
//
//	cd services/smtpd/test && flock /tmp/smtp-bench.lock env TWINMX_BENCH_AB_OLD=/tmp/old/smtpd \
//	    go test -count=1 -run TestBenchSMTPDAB -v .
func TestBenchSMTPDAB(t *testing.T) {
	old := os.Getenv("TWINMX_BENCH_AB_OLD")
	if old == "" {
		t.Skip("benchmark: set TWINMX_BENCH_AB_OLD to the other smtpd binary")
	}
	requireTool(t, smtpSource)
	n := envInt("TWINMX_BENCH_MAILS", 3000)
	rounds := envInt("TWINMX_BENCH_ROUNDS", 6)
	const rcpt = "bench@twinmx.test"
	bin, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	// proctest runs binaries from binDir; the old one goes beside ours.
	if err := os.WriteFile(filepath.Join(binDir, "smtpd-old"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSite(t)
	s.Start()
	s.addMailbox(rcpt)
	filter := s.autoverdict("accept")
	flags := []string{"--max-conns-per-ip", "-1"}
	newP := s.startSMTPD(smtpdOptions{MinCopies: 1, Hostname: "bench.twinmx.test", Extra: flags,
		Env: strings.Fields(os.Getenv("TWINMX_BENCH_AB_NEW_ENV"))})
	oldAddr := proctest.FreePort(t)
	args := append([]string{"--listen", oldAddr, "--hostname", "bench.twinmx.test"}, s.DBFlags("smtpd")...)
	args = append(append(args, "--min-copies", "1", "--greet-pause", "0s"), flags...)
	oldP := proctest.NewProc(t, binDir, "smtpd-old", oldAddr, args...)
	oldP.Start()

	type side struct {
		name, addr string
		total      *cpuMeter
	}
	sides := []side{
		{"old", oldAddr, newCPUMeter(t, proc("smtpd", oldP.Cmd), proc("dbd", s.Cmd), proc("filter", filter))},
		{"new", newP.addr, newCPUMeter(t, proc("smtpd", newP.Cmd), proc("dbd", s.Cmd), proc("filter", filter))},
	}
	for _, sd := range sides { // warm-up, unmeasured
		if _, err := runSource(sd.addr, 20, 10240, 300, rcpt); err != nil {
			t.Fatalf("warm-up of %s: %v", sd.name, err)
		}
	}
	for r := 0; r < rounds; r++ {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			sd := sides[i]
			m := newCPUMeter(t, sd.total.procs...)
			var el time.Duration
			m.measure(n, func() { el, err = runSource(sd.addr, 20, 10240, n, rcpt) })
			if err != nil {
				t.Fatalf("smtp-source against %s: %v", sd.name, err)
			}
			for j := range m.used {
				sd.total.used[j] += m.used[j]
			}
			sd.total.mails += n
			t.Logf("round %d %s: %.0f mails/s, CPU a mail %s", r, sd.name, float64(n)/el.Seconds(), m)
		}
	}
	for _, sd := range sides {
		t.Logf("all rounds, %s: CPU a mail %s", sd.name, sd.total)
	}
}
