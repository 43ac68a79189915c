package test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// Postfix programs the harness runs.
const (
	postfixBin = "/usr/sbin/postfix"
	postqueue  = "/usr/sbin/postqueue"
	smtpSink   = "/usr/sbin/smtp-sink"
	smtpSource = "/usr/sbin/smtp-source"
)

// postfix is one private Postfix instance: its own config, queue and data
// folders under one temporary folder, listening only on 127.0.0.1, logging
// to a file through postlogd. Several run at once in parallel tests.
type postfix struct {
	t       testing.TB
	dir     string // root of the instance (0755: Postfix's daemons run as user postfix)
	conf    string // config_directory
	queue   string // queue_directory
	logPath string // maillog_file
	addr    string // its own smtpd: 127.0.0.1:PORT

	watchdog *exec.Cmd
}

// postfixConfig chooses the instance's role.
type postfixConfig struct {
	// Relayhost, when set, makes a sending MTA: every mail goes to
	// [HOST]:PORT, retried every second or two.
	Relayhost string
	// Hold makes a receiving MTA for benchmarks: its smtpd accepts mail
	// for any domain from 127.0.0.1 into the queue and puts it on hold
	// (written and fsynced like any queued mail, never delivered).
	Hold bool
	// Main adds or overrides main.cf parameters.
	Main map[string]string
}

// running tracks started instances so TestMain can stop what a crashed
// test left behind.
var running = struct {
	sync.Mutex
	confs map[string]bool
}{confs: map[string]bool{}}

func stopAllPostfix() {
	running.Lock()
	defer running.Unlock()
	for conf := range running.confs {
		exec.Command(postfixBin, "-c", conf, "abort").Run()
	}
}

// requirePostfix skips (or fails, with TWINMX_REQUIRE_POSTFIX set) when
// Postfix cannot run here: not installed, or not root (its master must
// start as root).
func requirePostfix(t testing.TB) {
	t.Helper()
	requireTool(t, postfixBin)
	if os.Geteuid() != 0 {
		if os.Getenv("TWINMX_REQUIRE_POSTFIX") != "" {
			t.Fatal("Postfix tests must run as root (its master starts as root) and TWINMX_REQUIRE_POSTFIX is set")
		}
		t.Skip("Postfix tests need root")
	}
}

// newPostfix configures and starts a private Postfix; it is stopped when
// the test ends, and its log is shown if the test failed.
func newPostfix(t testing.TB, cfg postfixConfig) *postfix {
	t.Helper()
	requirePostfix(t)
	dir, err := os.MkdirTemp("", "twinmx-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	p := &postfix{t: t, dir: dir, conf: filepath.Join(dir, "conf"), queue: filepath.Join(dir, "queue"),
		logPath: filepath.Join(dir, "maillog"), addr: proctest.FreePort(t)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log (tail):\n%s", proctest.Tail(p.log(), 60))
		}
		p.stop()
		os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for _, d := range []string{p.conf, p.queue, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("no user postfix: %v", err)
	}
	uid, _ := strconv.Atoi(pf.Uid)
	if err := os.Chown(data, uid, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	main := map[string]string{
		"compatibility_level":    "3.6",
		"queue_directory":        p.queue,
		"data_directory":         data,
		"mail_owner":             "postfix",
		"setgid_group":           "postdrop",
		"inet_interfaces":        "127.0.0.1",
		"inet_protocols":         "ipv4",
		"myhostname":             "sender.test",
		"mydomain":               "sender.test",
		"myorigin":               "sender.test",
		"mydestination":          "sender.test",
		"mynetworks":             "127.0.0.0/8",
		"local_transport":        "discard:", // bounces to the (local) sender end here
		"alias_maps":             "",
		"alias_database":         "",
		"biff":                   "no",
		"smtp_dns_support_level": "disabled",
		"smtpd_banner":           "$myhostname ESMTP",
		"maillog_file":           p.logPath,
		"maillog_file_prefixes":  dir,
		// Retries in seconds instead of minutes.
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "2s",
		"smtp_connect_timeout": "5s",
		"delay_warning_time":   "0h",
	}
	if cfg.Relayhost != "" {
		main["relayhost"] = "[" + strings.Replace(cfg.Relayhost, ":", "]:", 1)
	}
	if cfg.Hold {
		main["mydestination"] = ""
		main["smtpd_recipient_restrictions"] = "permit_mynetworks, reject"
		main["smtpd_end_of_data_restrictions"] = "check_client_access static:HOLD"
	}
	for k, v := range cfg.Main {
		main[k] = v
	}
	keys := make([]string, 0, len(main))
	for k := range main {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var mc strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&mc, "%s = %s\n", k, main[k])
	}
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(mc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// No chroot: the queue is in a temporary folder.
	const services = `
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
tlsmgr    unix  - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
`
	// The port comes from proctest.FreePort, which closes its listener:
	// another test's connection may take the port before Postfix binds it
	// (CI saw "bind 127.0.0.1 port 42283: Address already in use"). Then
	// Postfix is started again on another port, at most three times.
	for attempt := 1; ; attempt++ {
		if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(p.addr+" inet n - n - - smtpd"+services), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(postfixBin, "-c", p.conf, "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(p.log(), "Address already in use") {
			t.Fatalf("postfix start: %v\n%s\nlog:\n%s", err, out, p.log())
		}
		t.Logf("postfix start: port %s taken meanwhile; trying another", p.addr)
		p.addr = proctest.FreePort(t)
	}
	running.Lock()
	running.confs[p.conf] = true
	running.Unlock()
	// Postfix's master detaches. A watchdog child aborts it if this test
	// process dies without cleaning up (a test timeout panics past every
	// Cleanup and TestMain).
	p.watchdog = exec.Command("/bin/sh", "-c",
		`trap '`+postfixBin+` -c "$0" abort; exit 0' TERM; while sleep 1; do :; done`, p.conf)
	dieWithTest(p.watchdog, syscall.SIGTERM)
	if err := p.watchdog.Start(); err != nil {
		t.Fatal(err)
	}
	proctest.WaitListening(t, p.addr, 20*time.Second, stringer(p.log))
	return p
}

type stringer func() string

func (f stringer) String() string { return f() }

// stop aborts the instance and waits (bounded) until its master is gone.
func (p *postfix) stop() {
	running.Lock()
	delete(running.confs, p.conf)
	running.Unlock()
	if p.watchdog != nil {
		p.watchdog.Process.Kill()
		p.watchdog.Wait()
		p.watchdog = nil
	}
	pid := p.masterPID()
	exec.Command(postfixBin, "-c", p.conf, "abort").Run()
	if pid <= 0 {
		return
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

func (p *postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.queue, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// log returns the whole mail log so far.
func (p *postfix) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitLogCount polls the log until re matches at least n lines and
// returns the n-th. With flush, it also runs `postqueue -f` every two
// seconds: Postfix's own retry timer can lose a round under load
// ("skipped, still being delivered"), and tests must not depend on it.
func (p *postfix) waitLogCount(re *regexp.Regexp, n int, limit time.Duration, flush bool) string {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	lastFlush := time.Now()
	for {
		var found []string
		for _, line := range strings.Split(p.log(), "\n") {
			if re.MatchString(line) {
				found = append(found, line)
			}
		}
		if len(found) >= n {
			return found[n-1]
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d lines of the Postfix log match %s after %s, want %d; log:\n%s", len(found), re, limit, n, proctest.Tail(p.log(), 40))
		}
		if flush && time.Since(lastFlush) > 2*time.Second {
			p.flush()
			lastFlush = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queueText is `postqueue -p`.
func (p *postfix) queueText() string {
	out, _ := exec.Command(postqueue, "-c", p.conf, "-p").CombinedOutput()
	return string(out)
}

// flush asks Postfix to retry every deferred mail now (`postqueue -f`).
func (p *postfix) flush() {
	p.t.Helper()
	if out, err := exec.Command(postqueue, "-c", p.conf, "-f").CombinedOutput(); err != nil {
		p.t.Fatalf("postqueue -f: %v: %s", err, out)
	}
}

// waitQueueEmpty polls `postqueue -p` until the queue is empty.
func (p *postfix) waitQueueEmpty(limit time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(p.queueText(), "Mail queue is empty") {
		if time.Now().After(deadline) {
			p.t.Fatalf("Postfix queue not empty after %s:\n%s", limit, p.queueText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inject submits a mail over SMTP to the instance's own smtpd and returns
// Postfix's queue ID.
func (p *postfix) inject(from string, to []string, msg string) string {
	p.t.Helper()
	r, err := sendMail(p.addr, from, to, []byte(msg), 20*time.Second)
	if err != nil || r.Code != 250 {
		p.t.Fatalf("inject into Postfix: %v %v", r, err)
	}
	m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(r.Text)
	if m == nil {
		p.t.Fatalf("no queue ID in Postfix's reply %q", r.Text)
	}
	return m[1]
}

// deliveryLine waits for the delivery status line of queue ID qid whose
// status is one of sent, deferred, bounced, and returns it. It flushes the
// queue while it waits, so a retry comes within seconds.
func (p *postfix) deliveryLine(qid, status string, limit time.Duration) string {
	p.t.Helper()
	return p.nthDeliveryLine(qid, status, 1, limit)
}

// nthDeliveryLine is deliveryLine for the n-th such line.
func (p *postfix) nthDeliveryLine(qid, status string, n int, limit time.Duration) string {
	p.t.Helper()
	return p.waitLogCount(regexp.MustCompile(`\b`+qid+`: to=<[^>]*>, .*status=`+status+` `), n, limit, true)
}

// sink is an smtp-sink process: Postfix's protocol test server.
type sink struct {
	addr string
	cmd  *exec.Cmd
}

// startSink runs smtp-sink on a free port with the given options and at
// most backlog connections.
func startSink(t testing.TB, backlog int, opts ...string) *sink {
	t.Helper()
	requireTool(t, smtpSink)
	s := &sink{addr: proctest.FreePort(t)}
	args := append([]string{"-u", "postfix"}, opts...)
	args = append(args, s.addr, strconv.Itoa(backlog))
	s.cmd = exec.Command(smtpSink, args...)
	var out proctest.SyncBuffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	dieWithTest(s.cmd, syscall.SIGKILL)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	proctest.WaitListening(t, s.addr, 10*time.Second, &out)
	return s
}

// TestPostfixHarness checks the harness itself against smtp-sink, so it
// runs even without smtpd: a soft reject at end of DATA is deferred and
// retried within seconds, a hard reject bounces, an accept is sent.
func TestPostfixHarness(t *testing.T) {
	t.Parallel()
	requireTool(t, smtpSink)
	soft := startSink(t, 10, "-r", ".")
	hard := startSink(t, 10, "-f", ".")
	ok := startSink(t, 10)
	for _, c := range []struct {
		sink   *sink
		status string
		reply  string
	}{
		{soft, "deferred", "said: 4"},
		{hard, "bounced", "said: 5"},
		{ok, "sent", "250"},
	} {
		p := newPostfix(t, postfixConfig{Relayhost: c.sink.addr})
		qid := p.inject("alice@sender.test", []string{"bob@twinmx.test"}, "Subject: harness\r\n\r\nhello\r\n")
		line := p.deliveryLine(qid, c.status, 20*time.Second)
		if !strings.Contains(line, c.reply) {
			t.Errorf("status=%s line lacks %q: %s", c.status, c.reply, line)
		}
		if c.status == "deferred" {
			p.nthDeliveryLine(qid, "deferred", 2, 20*time.Second) // retried
		} else {
			p.waitQueueEmpty(10 * time.Second)
		}
	}
}
