// Package test holds smtpd's black-box tests. They build the real dbd,
// dbctl and smtpd binaries, run dbd and smtpd as separate processes on
// 127.0.0.1, and drive smtpd with real clients: a private Postfix instance
// relaying to it (postfix_test.go), swaks, Python's smtplib, and a raw Go
// SMTP client. The benchmark harness (bench_test.go) runs only when
// TWINMX_BENCH is set; deploy/bench/smtp-bench.sh runs it.
//
// Environment:
//
//	TWINMX_REQUIRE_POSTFIX  fail instead of skip when Postfix, swaks, python3 or strace (TestSyncEIO) is missing
//	TWINMX_REQUIRE_CORPUS   fail instead of skip when the mail corpus is missing
//	TWINMX_CORPUS           folder of the corpus (default ../../../../shared/corpus)
//	TWINMX_BENCH            run the benchmark (bench_test.go); TWINMX_BENCH_MAILS, TWINMX_BENCH_ROUNDS size it
//	TWINMX_FULL_LOGS        show whole process logs of a failed test, not their tails
//
// TestDiskFull mounts a tmpfs for dbd's data, so the package's tests must
// run as root (CI does; Postfix's tests need root too); it fails, not
// skips, otherwise.
//
// Every child process gets a parent-death signal and every Postfix
// instance a watchdog, so a test binary killed by its timeout leaves no
// dbd, smtpd or Postfix running.
package test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// binDir holds the binaries built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("smtpd-bin-", map[string]string{
		"dbd": "../../dbd/cmd/dbd", "dbctl": "../../dbd/cmd/dbctl", "backupd": "../../backupd/cmd/backupd", "smtpd": "../cmd/smtpd",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	stopAllPostfix()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one dbd process with its keys (dbd, admin, smtpd, backupd),
// its clients file and data folder.
type site struct {
	*proctest.DB
	backupd *proctest.Proc // the backupd twoSites started, on site A
}

// newSite makes a site's keys and clients file; the test starts its dbd.
func newSite(t testing.TB) *site {
	t.Helper()
	return &site{DB: proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Keys: map[string]string{"smtpd": "smtpd", "backupd": "backupd"}})}
}

// smtpdProc is one smtpd process.
type smtpdProc struct {
	*proctest.Proc
	addr    string
	metrics string
}

// smtpdOptions are the command-line choices of a test; zero values leave
// smtpd's defaults except GreetPause, which defaults to 0 here (tests must
// not wait for the greeting pause unless they test it).
type smtpdOptions struct {
	Listen         string        // --listen; "": a free port on 127.0.0.1
	DecisionWindow time.Duration // --decision-window; 0: smtpd's default
	MinCopies      int           // --min-copies; 0: smtpd's default
	GreetPause     string        // --greet-pause; "" means "0s"
	Metrics        bool          // serve --metrics on a free port
	Hostname       string        // --hostname; default mx.twinmx.test
	Extra          []string      // more flags
	Env            []string      // more environment (NAME=VALUE)
}

// startSMTPD runs smtpd against s and waits until it accepts connections.
func (s *site) startSMTPD(o smtpdOptions) *smtpdProc {
	s.T().Helper()
	p := &smtpdProc{addr: o.Listen}
	if p.addr == "" {
		p.addr = proctest.FreePort(s.T())
	}
	host := o.Hostname
	if host == "" {
		host = "mx.twinmx.test"
	}
	args := append([]string{"--listen", p.addr, "--hostname", host}, s.DBFlags("smtpd")...)
	if o.DecisionWindow > 0 {
		args = append(args, "--decision-window", o.DecisionWindow.String())
	}
	if o.MinCopies > 0 {
		args = append(args, "--min-copies", fmt.Sprint(o.MinCopies))
	}
	gp := o.GreetPause
	if gp == "" {
		gp = "0s"
	}
	args = append(args, "--greet-pause", gp)
	if o.Metrics {
		p.metrics = proctest.FreePort(s.T())
		args = append(args, "--metrics", p.metrics)
	}
	args = append(args, o.Extra...)
	p.Proc = proctest.NewProc(s.T(), binDir, "smtpd", p.addr, args...)
	p.Env = o.Env
	p.Start()
	return p
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	n, err := proctest.PeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// requireTool skips (or, with TWINMX_REQUIRE_POSTFIX set, fails) when a
// program the test drives is not installed.
func requireTool(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("TWINMX_REQUIRE_POSTFIX") != "" {
		t.Fatalf("%s is missing and TWINMX_REQUIRE_POSTFIX is set (apt-get install postfix swaks python3)", path)
	}
	t.Skipf("%s is not installed (apt-get install postfix swaks python3; set TWINMX_REQUIRE_POSTFIX=1 to fail instead)", path)
}
