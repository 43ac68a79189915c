// Package test holds pop3d's black-box tests. They build the real dbd,
// dbctl, backupd and pop3d binaries, run them as separate processes on
// 127.0.0.1, make keys and accounts with dbctl, and retrieve mail with
// real clients: Python's poplib, fetchmail, getmail6, and a raw Go POP3
// client (corpus, failover).
//
// Environment:
//
//	TWINMX_REQUIRE_CLIENTS  fail instead of skip when python3, fetchmail or getmail is missing
//	TWINMX_REQUIRE_CORPUS   fail instead of skip when the mail corpus is missing
//	TWINMX_CORPUS           folder of the corpus (default ../../../../shared/corpus)
//	TWINMX_BENCH            run the Dovecot comparison (bench_test.go; deploy/bench/pop3-bench.sh)
//	TWINMX_SEED, TWINMX_STEPS, TWINMX_DIFF_DUMP, TWINMX_DIFF_SCRIPT
//	                        replay, lengthen, dump or script the Dovecot differential (diffrand_test.go)
//
// Every child process gets a parent-death signal, so a test binary killed
// by its timeout leaves nothing running.
package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("pop3d-bin-", map[string]string{
		"dbd": "../../dbd/cmd/dbd", "dbctl": "../../dbd/cmd/dbctl", "backupd": "../../backupd/cmd/backupd", "pop3d": "../cmd/pop3d",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one dbd process with keys for admin, pop3d (role mailbox) and,
// if given, a shared backupd key.
type site struct {
	t     testing.TB
	name  string
	dir   string
	addr  string
	cmd   *exec.Cmd
	log   *proctest.SyncBuffer
	admin *client.Client
}

func newSite(t testing.TB, name, backupdPub string) *site {
	t.Helper()
	s := &site{t: t, name: name, dir: t.TempDir()}
	for _, k := range []string{"dbd", "admin", "pop3d"} {
		s.run(nil, "dbctl", "keygen", "--out", s.key(k))
	}
	clients := "admin keys/admin.pub\nmailbox keys/pop3d.pub\n"
	if backupdPub != "" {
		clients += "backupd " + backupdPub + "\n"
	}
	if err := os.WriteFile(filepath.Join(s.dir, "clients"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && s.log != nil {
			t.Logf("dbd %s log (tail):\n%s", name, tail(s.log.String(), 30))
		}
		s.kill()
	})
	s.start()
	return s
}

func (s *site) key(name string) string { return filepath.Join(s.dir, "keys", name) }

// start runs dbd, on the address of its last run if it had one.
func (s *site) start() {
	s.t.Helper()
	if s.addr == "" {
		s.addr = proctest.FreePort(s.t)
	}
	s.log = &proctest.SyncBuffer{}
	s.cmd = exec.Command(filepath.Join(binDir, "dbd"), "--data", filepath.Join(s.dir, "data"), "--listen", s.addr,
		"--key", s.key("dbd"), "--clients", filepath.Join(s.dir, "clients"), "--site", strings.ToLower(s.name))
	s.cmd.Stderr = s.log
	dieWithTest(s.cmd)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	proctest.WaitListening(s.t, s.addr, 20*time.Second, s.log)
}

func (s *site) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// run runs a built program and fails the test unless it exits 0.
func (s *site) run(stdin io.Reader, prog string, args ...string) string {
	s.t.Helper()
	return runProg(s.t, stdin, prog, args...)
}

func runProg(t testing.TB, stdin io.Reader, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, prog), args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	dieWithTest(cmd)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// dbctl runs dbctl with the admin key.
func (s *site) dbctl(stdin io.Reader, args ...string) string {
	s.t.Helper()
	return s.run(stdin, "dbctl", append([]string{"--db", s.addr, "--db-pub", s.key("dbd.pub"), "--key", s.key("admin"), "--timeout", "20s"}, args...)...)
}

// user makes an account with dbctl (password on stdin).
func (s *site) user(login, password string, boxes ...string) {
	s.t.Helper()
	args := []string{"user", "add", login}
	for _, b := range boxes {
		args = append(args, "--mailbox", b)
	}
	s.dbctl(strings.NewReader(password+"\n"), args...)
}

func (s *site) client() *client.Client {
	s.t.Helper()
	if s.admin != nil {
		return s.admin
	}
	kp, err := wire.LoadKeyPair(s.key("admin"))
	if err != nil {
		s.t.Fatal(err)
	}
	pub, err := wire.LoadPublicKey(s.key("dbd.pub"))
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := client.New(client.Config{Addr: s.addr, Static: kp, Server: pub, Timeout: 30 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	s.admin = c
	return c
}

// deliver stores raw in mailbox box as smtpd does (header, body,
// received, mail and receive rows, ack and the received link in one
// batch) and returns the receive row's key.
func (s *site) deliver(ctx context.Context, box string, raw []byte) (model.Key, error) {
	rows := model.NewMailRows(raw)
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(box)))
	ref := wire.Ref{Content: rc}
	_, err := s.client().Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: 1},
	})
	return model.KeyOf(model.Receive, rc), err
}

// pop3dProc is one pop3d process.
type pop3dProc struct {
	addr    string
	metrics string
	cmd     *exec.Cmd
	log     *proctest.SyncBuffer
}

// startPOP3D runs pop3d against s (on addr, or a free port when "").
func (s *site) startPOP3D(addr string, extra ...string) *pop3dProc {
	s.t.Helper()
	if addr == "" {
		addr = proctest.FreePort(s.t)
	}
	p := &pop3dProc{addr: addr, metrics: proctest.FreePort(s.t), log: &proctest.SyncBuffer{}}
	args := append([]string{"--listen", p.addr, "--metrics", p.metrics, "--db", s.addr, "--db-pub", s.key("dbd.pub"),
		"--key", s.key("pop3d"), "--auth-fail-delay", "0"}, extra...)
	p.cmd = exec.Command(filepath.Join(binDir, "pop3d"), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	dieWithTest(p.cmd)
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("pop3d %s log (tail):\n%s", s.name, tail(p.log.String(), 30))
		}
		p.kill()
	})
	proctest.WaitListening(s.t, p.addr, 20*time.Second, p.log)
	return p
}

func (p *pop3dProc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// requireTool returns the path of a client program, or skips the test
// (fails with TWINMX_REQUIRE_CLIENTS set) when it is not installed.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("TWINMX_REQUIRE_CLIENTS") != "" {
		t.Fatalf("%s is missing and TWINMX_REQUIRE_CLIENTS is set (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s; set TWINMX_REQUIRE_CLIENTS=1 to fail instead)", name, pkg)
	return ""
}

// crlf is b with every bare LF as CRLF and a final CRLF: what a POP3
// client receives for a stored mail b.
func crlf(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}

// lf is b with CRLF as LF: what fetchmail and getmail write.
func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

func ctxFor(t testing.TB, d time.Duration) context.Context { return proctest.Ctx(t, d) }

// backupdProc is a backupd process replicating between two sites.
type backupdProc struct {
	t       testing.TB
	args    []string
	metrics string
	cmd     *exec.Cmd
	log     *proctest.SyncBuffer
}

// startBackupd runs backupd between a and b with the key dir/backupd
// (listed at both sites) until the test ends.
func startBackupd(t testing.TB, dir string, a, b *site) *backupdProc {
	t.Helper()
	p := &backupdProc{t: t, metrics: proctest.FreePort(t), log: &proctest.SyncBuffer{}}
	p.args = []string{"--key", filepath.Join(dir, "backupd"), "--metrics", p.metrics,
		"--site", fmt.Sprintf("A=%s,%s", a.addr, a.key("dbd.pub")), "--site", fmt.Sprintf("B=%s,%s", b.addr, b.key("dbd.pub"))}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backupd log (tail):\n%s", tail(p.log.String(), 30))
		}
		p.kill()
	})
	p.start()
	return p
}

func (p *backupdProc) start() {
	p.t.Helper()
	p.cmd = exec.Command(filepath.Join(binDir, "backupd"), p.args...)
	p.cmd.Stderr = p.log
	dieWithTest(p.cmd)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	proctest.WaitListening(p.t, p.metrics, 20*time.Second, p.log)
}

// kill sends SIGKILL and reaps the process.
func (p *backupdProc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}
