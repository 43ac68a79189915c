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
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
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
	t       testing.TB
	dir     string
	addr    string
	cmd     *exec.Cmd
	backupd *exec.Cmd // the backupd twoSites started, on site A
	log     *proctest.SyncBuffer
	pub     wire.PublicKey

	adminOnce sync.Once
	admin     *client.Client
}

func newSite(t testing.TB) *site {
	t.Helper()
	s := &site{t: t, dir: t.TempDir()}
	for _, name := range []string{"dbd", "admin", "smtpd", "backupd"} {
		s.dbctl("keygen", "--out", filepath.Join(s.dir, "keys", name))
	}
	clients := "admin keys/admin.pub\nsmtpd keys/smtpd.pub\nbackupd keys/backupd.pub\n"
	if err := os.WriteFile(filepath.Join(s.dir, "clients"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := wire.LoadPublicKey(s.key("dbd.pub"))
	if err != nil {
		t.Fatal(err)
	}
	s.pub = pub
	t.Cleanup(func() {
		if t.Failed() && s.log != nil {
			t.Logf("dbd log (tail):\n%s", tail(s.log.String(), 40))
		}
		s.kill()
	})
	return s
}

func (s *site) key(name string) string { return filepath.Join(s.dir, "keys", name) }

// start runs dbd on its fixed port (a restart keeps it) and waits until
// it accepts connections.
func (s *site) start() {
	s.t.Helper()
	if s.addr == "" {
		s.addr = proctest.FreePort(s.t)
	}
	s.log = &proctest.SyncBuffer{}
	s.cmd = exec.Command(filepath.Join(binDir, "dbd"), "--data", filepath.Join(s.dir, "data"), "--listen", s.addr,
		"--key", s.key("dbd"), "--clients", filepath.Join(s.dir, "clients"))
	s.cmd.Stderr = s.log
	dieWithTest(s.cmd, syscall.SIGKILL)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	proctest.WaitListening(s.t, s.addr, 20*time.Second, s.log)
}

// kill sends SIGKILL and reaps the process.
func (s *site) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// dbctlExit runs dbctl with the admin key (except for keygen) and returns
// stdout, stderr and the exit status.
func (s *site) dbctlExit(args ...string) (string, string, int) {
	s.t.Helper()
	full := args
	if args[0] != "keygen" {
		full = append([]string{"--db", s.addr, "--db-pub", s.key("dbd.pub"), "--key", s.key("admin"),
			"--timeout", "20s"}, args...)
	}
	cmd := exec.Command(filepath.Join(binDir, "dbctl"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	dieWithTest(cmd, syscall.SIGKILL)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("dbctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// dbctl runs dbctl and fails the test unless it exits 0.
func (s *site) dbctl(args ...string) string {
	s.t.Helper()
	out, errs, code := s.dbctlExit(args...)
	if code != 0 {
		s.t.Fatalf("dbctl %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// client returns a wire client with the admin key, shared by the test.
func (s *site) client() *client.Client {
	s.t.Helper()
	s.adminOnce.Do(func() {
		kp, err := wire.LoadKeyPair(s.key("admin"))
		if err != nil {
			s.t.Fatal(err)
		}
		c, err := client.New(client.Config{Addr: s.addr, Static: kp, Server: s.pub, Timeout: 20 * time.Second,
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			s.t.Fatal(err)
		}
		s.admin = c
		s.t.Cleanup(func() { c.Close() })
	})
	return s.admin
}

// smtpdProc is one smtpd process.
type smtpdProc struct {
	t       testing.TB
	addr    string
	metrics string
	cmd     *exec.Cmd
	log     *proctest.SyncBuffer
}

// smtpdOptions are the command-line choices of a test; zero values leave
// smtpd's defaults except GreetPause, which defaults to 0 here (tests must
// not wait for the greeting pause unless they test it).
type smtpdOptions struct {
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
	s.t.Helper()
	p := &smtpdProc{t: s.t, addr: proctest.FreePort(s.t), log: &proctest.SyncBuffer{}}
	host := o.Hostname
	if host == "" {
		host = "mx.twinmx.test"
	}
	args := []string{"--listen", p.addr, "--hostname", host, "--db", s.addr, "--db-pub", s.key("dbd.pub"),
		"--key", s.key("smtpd")}
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
		p.metrics = proctest.FreePort(s.t)
		args = append(args, "--metrics", p.metrics)
	}
	args = append(args, o.Extra...)
	p.cmd = exec.Command(filepath.Join(binDir, "smtpd"), args...)
	if len(o.Env) > 0 {
		p.cmd.Env = append(os.Environ(), o.Env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	dieWithTest(p.cmd, syscall.SIGKILL)
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("smtpd log (tail):\n%s", tail(p.log.String(), 60))
		}
		p.kill()
	})
	proctest.WaitListening(s.t, p.addr, 20*time.Second, p.log)
	return p
}

func (p *smtpdProc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// tail returns the last n lines of s (all of them with TWINMX_FULL_LOGS
// set).
func tail(s string, n int) string {
	if os.Getenv("TWINMX_FULL_LOGS") != "" {
		return s
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
