package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBenchStrict is issue 4's end-to-end benchmark, run by
// deploy/bench/smtp-bench.sh (TWINMX_BENCH=1), never by `make test`: the
// same load, in alternating rounds of one run, against
//
//  1. smtpd in strict mode (--min-copies 2): site A's dbd, site B's dbd and
//     backupd between them, all on this machine; 250 only once the mail
//     is durable on both sites, backed-up mark set, acknowledged;
//  2. Postfix's own smtpd accepting into its queue (one fsynced copy).
//
// Loads: smtp-source -s 20 -l 10240 -m N (one body shared by all mails),
// and the Go client with 20 sessions and distinct 10 kB bodies.
func TestBenchStrict(t *testing.T) {
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
	a, siteB := twoSites(t)
	a.addMailbox(rcpt)
	filter := a.autoverdict("accept")
	d := a.startSMTPD(smtpdOptions{MinCopies: 2, Metrics: true, Hostname: "strict.twinmx.test",
		Extra: []string{"--max-conns-per-ip", "-1"}})
	pf := newPostfix(t, postfixConfig{Hold: true, Main: map[string]string{"myhostname": "postfix.bench.test"}})
	targets := []struct{ name, addr string }{{"smtpd-strict", d.addr}, {"postfix", pf.addr}}
	for _, tg := range targets {
		if _, err := runSource(tg.addr, sessions, size, 200, rcpt); err != nil {
			t.Fatalf("warm-up of %s: %v", tg.name, err)
		}
	}
	meters := map[string]*cpuMeter{
		"smtpd-strict": newCPUMeter(t, proc("smtpd", d.Cmd), proc("dbd A", a.Cmd), proc("dbd B", siteB.Cmd),
			proc("backupd", a.backupd.Cmd), proc("filter", filter)),
		"postfix": newCPUMeter(t, postfixProc(pf)),
	}
	source := map[string][]float64{}
	goRate := map[string][]float64{}
	lat := map[string][]time.Duration{}
	for r := 0; r < rounds; r++ {
		for _, tg := range targets {
			var el time.Duration
			var err error
			meters[tg.name].measure(n, func() { el, err = runSource(tg.addr, sessions, size, n, rcpt) })
			if err != nil {
				t.Fatalf("smtp-source against %s: %v", tg.name, err)
			}
			source[tg.name] = append(source[tg.name], float64(n)/el.Seconds())
			rate, ls, codes, err := runGoClient(tg.addr, sessions, size, n/2, rcpt, fmt.Sprintf("strict-r%d-%s", r, tg.name))
			if err != nil || codes["250 2.0.0"] != n/2 {
				t.Fatalf("Go client against %s: replies %v, %v", tg.name, codes, err)
			}
			goRate[tg.name] = append(goRate[tg.name], rate)
			lat[tg.name] = append(lat[tg.name], ls...)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nstrict mode (two dbds + backupd on this machine) vs Postfix, %d rounds; mails/s, median (rounds)\n", rounds)
	for _, tg := range targets {
		fmt.Fprintf(&b, "%-13s smtp-source -s %d -l %d -m %d: %6.0f %-14s Go client: %6.0f %-14s p50 %s p99 %s\n",
			tg.name, sessions, size, n, median(source[tg.name]), fmtRounds(source[tg.name]),
			median(goRate[tg.name]), fmtRounds(goRate[tg.name]),
			quantile(lat[tg.name], 0.5).Round(10*time.Microsecond), quantile(lat[tg.name], 0.99).Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "smtpd-strict/postfix: smtp-source %.2f×, Go client %.2f×\n",
		median(source["smtpd-strict"])/median(source["postfix"]), median(goRate["smtpd-strict"])/median(goRate["postfix"]))
	ours, theirs := meters["smtpd-strict"], meters["postfix"]
	fmt.Fprintf(&b, "CPU per mail, smtp-source: twinmx %s; Postfix %s (Postfix ÷ twinmx %.2f)\n",
		ours, theirs, float64(theirs.perMail())/float64(ours.perMail()))
	printAcks(t, &b, d.metrics)
	t.Log(b.String())
	fmt.Print(b.String())
}
