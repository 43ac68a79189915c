package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The metrics ports make run serves (deploy/run-local.sh), two per service
// except backupd.
var runMetrics = []string{"7311", "7312", "7321", "7322", "7331", "7341", "7342", "7351", "7352", "7361", "7362", "7371", "7372"}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// need returns the path of program, skipping the test when it is missing
// unless TWINMX_REQUIRE_CLIENTS is set (CI), where a missing one fails.
func need(t *testing.T, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_CLIENTS") != "" {
			t.Fatalf("%s is not installed (TWINMX_REQUIRE_CLIENTS is set)", program)
		}
		t.Skipf("%s is not installed", program)
	}
	return p
}

// TestMakeRun runs the README's first command's script as a newcomer would:
// it waits for the system, sends a mail with swaks to site A, reads it with
// Python's poplib from site B, lets a real Prometheus scrape every service,
// then stops everything with SIGINT (Ctrl-C) and checks that nothing is
// left running (issue 8).
func TestMakeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	swaks, python := need(t, "swaks"), need(t, "python3")
	for _, port := range []string{"2525", "2526", "7301", "7302", "1110", "1111", "1143", "1144"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("127.0.0.1:%s is in use (is `make run` running?): this test needs make run's fixed ports", port)
		}
	}
	bin := t.TempDir()
	for _, p := range []string{"dbd", "dbctl", "smtpd", "backupd", "spamd", "pop3d", "imapd", "smsd"} {
		svc := p
		if p == "dbctl" {
			svc = "dbd"
		}
		build := exec.Command("go", "build", "-o", bin, "./cmd/"+p)
		build.Dir = filepath.Join("..", "services", svc)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", p, err, out)
		}
	}
	runDir := t.TempDir()
	script, err := filepath.Abs("run-local.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	// No corpus: spamd judges without a model (training would only cost
	// time here).
	cmd.Env = append(os.Environ(), "BIN="+bin, "RUN="+runDir, "CORPUS=/nonexistent")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			killLeft(runDir)
		}
		if t.Failed() {
			t.Logf("run-local.sh output:\n%s", out.String())
			for _, l := range []string{"smtpd-a", "spamd-a", "pop3d-b", "backupd"} {
				b, _ := os.ReadFile(filepath.Join(runDir, l+".log"))
				t.Logf("%s.log (tail):\n%s", l, tail(string(b), 15))
			}
		}
	}()
	waitUntil(t, 120*time.Second, "make run to print that it is running", func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("run-local.sh exited early: %v", err)
		default:
		}
		return strings.Contains(out.String(), "twinmx is running")
	})

	subject := fmt.Sprintf("make run test %d", time.Now().UnixNano())
	send := exec.Command(swaks, "--server", "127.0.0.1:2525", "--to", "demo@twinmx.test", "--from", "newcomer@example.net",
		"--h-Subject", subject, "--timeout", "60")
	if b, err := send.CombinedOutput(); err != nil || !strings.Contains(string(b), "\n<-  250 2.0.0") {
		t.Fatalf("swaks to site A: %v\n%s", err, b)
	}
	// The mail was answered 250 only once it was on both sites: site B's
	// pop3d shows it (the account and mailbox were made at site A and
	// replicated too).
	pop := `import poplib, sys
p = poplib.POP3("127.0.0.1", 1111, timeout=30)
p.user("demo"); p.pass_("demo-password")
n = len(p.list()[1])
found = any(sys.argv[1].encode() in b"\n".join(p.retr(i)[1]) for i in range(1, n + 1))
p.quit()
sys.exit(0 if found else 3)
`
	waitUntil(t, 30*time.Second, "the mail in site B's POP3 maildrop", func() bool {
		return exec.Command(python, "-c", pop, subject).Run() == nil
	})

	scrapeAll(t, runDir)

	// Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
	start := time.Now()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-exited:
		stopped = true
	case <-time.After(20 * time.Second):
		t.Fatal("make run did not stop within 20 s of SIGINT")
	}
	took := time.Since(start)
	if left := killLeft(runDir); len(left) > 0 {
		t.Fatalf("still running after make run stopped: %v", left)
	}
	t.Logf("stopped in %v after SIGINT", took.Round(time.Millisecond))
}

// scrapeAll runs a real Prometheus against every metrics port of make run
// and waits until every target is up, when Prometheus is installed (CI
// installs it; elsewhere the check is skipped with a log line unless
// TWINMX_REQUIRE_PROMTOOL is set).
func scrapeAll(t *testing.T, runDir string) {
	t.Helper()
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_PROMTOOL") != "" {
			t.Fatal("prometheus is not installed (TWINMX_REQUIRE_PROMTOOL is set)")
		}
		t.Log("prometheus is not installed: scrape check skipped")
		return
	}
	var targets []string
	for _, p := range runMetrics {
		targets = append(targets, `"127.0.0.1:`+p+`"`)
	}
	rules, err := filepath.Abs(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(runDir, "prometheus.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: twinmx\n    static_configs:\n      - targets: [%s]\n",
		rules, strings.Join(targets, ", "))), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := exec.Command(prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(runDir, "prom-data"), "--web.listen-address="+addr)
	plog := &syncBuf{}
	p.Stdout, p.Stderr = plog, plog
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Process.Kill()
		p.Wait()
	}()
	var last string
	ok := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(time.Second) {
		last, ok = allUp(addr, len(runMetrics))
	}
	if !ok {
		t.Fatalf("prometheus: not every target is up: %s\n%s", last, tail(plog.String(), 20))
	}
	if strings.Contains(plog.String(), "Error loading rule") || strings.Contains(plog.String(), "error loading rules") {
		t.Fatalf("prometheus could not load the alert rules:\n%s", plog.String())
	}
	t.Logf("prometheus: %s", last)
}

// allUp asks Prometheus's API whether n targets are up.
func allUp(addr string, n int) (string, bool) {
	resp, err := http.Get("http://" + addr + "/api/v1/targets")
	if err != nil {
		return err.Error(), false
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err.Error(), false
	}
	up, down := 0, []string{}
	for _, tg := range r.Data.ActiveTargets {
		if tg.Health == "up" {
			up++
		} else {
			down = append(down, tg.ScrapeURL+" "+tg.Health+" "+tg.LastError)
		}
	}
	return fmt.Sprintf("%d of %d up; not up: %v", up, n, down), up == n
}

// killLeft kills (SIGKILL) and returns every process whose command line
// names runDir: what a clean stop must not leave behind.
func killLeft(runDir string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte(runDir)) {
			continue
		}
		left = append(left, strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " "))
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(f)), "%d", &pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return left
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", limit, what)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
