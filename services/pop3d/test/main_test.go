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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
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
	*proctest.DB
	pop3dEnv []string // more environment for the pop3ds startPOP3D starts
}

func newSite(t testing.TB, name, backupdPub string) *site {
	t.Helper()
	cfg := proctest.DBConfig{Bin: binDir, Site: name, Keys: map[string]string{"pop3d": "mailbox"}}
	if backupdPub != "" {
		cfg.Clients = []string{"backupd " + backupdPub}
	}
	s := &site{DB: proctest.NewDB(t, cfg)}
	s.Start()
	return s
}

// newDeployedSite is newSite for benchmarks: dbd and the pop3ds get the
// runtime settings of their env files (proctest.RuntimeEnv).
func newDeployedSite(t testing.TB, name string) *site {
	t.Helper()
	cfg := proctest.DBConfig{Bin: binDir, Site: name, Keys: map[string]string{"pop3d": "mailbox"}, Env: proctest.RuntimeEnv(t, "dbd")}
	s := &site{DB: proctest.NewDB(t, cfg), pop3dEnv: proctest.RuntimeEnv(t, "pop3d")}
	s.Start()
	return s
}

func runProg(t testing.TB, stdin io.Reader, prog string, args ...string) string {
	t.Helper()
	return proctest.RunProg(t, binDir, stdin, prog, args...)
}

// user makes an account with dbctl (password on stdin).
func (s *site) user(login, password string, boxes ...string) {
	s.T().Helper()
	args := []string{"user", "add", login}
	for _, b := range boxes {
		args = append(args, "--mailbox", b)
	}
	s.Dbctl(strings.NewReader(password+"\n"), args...)
}

// deliver stores raw in mailbox box as smtpd does (header, body,
// received, mail and receive rows, ack and the received link in one
// batch) and returns the receive row's key.
func (s *site) deliver(ctx context.Context, box string, raw []byte) (model.Key, error) {
	rows := model.NewMailRows(raw)
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(box)))
	ref := wire.Ref{Content: rc}
	_, err := s.Client().Batch(ctx, []wire.Request{
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
	*proctest.Proc
	addr    string
	metrics string
}

// startPOP3D runs pop3d against s (on addr, or a free port when "").
func (s *site) startPOP3D(addr string, extra ...string) *pop3dProc {
	s.T().Helper()
	if addr == "" {
		addr = proctest.FreePort(s.T())
	}
	p := &pop3dProc{addr: addr, metrics: proctest.FreePort(s.T())}
	args := append([]string{"--listen", p.addr, "--metrics", p.metrics, "--db", s.Addr, "--db-pub", s.Key("dbd.pub"),
		"--key", s.Key("pop3d"), "--auth-fail-delay", "0"}, extra...)
	p.Proc = proctest.NewProc(s.T(), binDir, "pop3d", p.addr, args...)
	p.Env = s.pop3dEnv
	p.Start()
	return p
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

// startBackupd runs backupd between a and b with the key dir/backupd
// (listed at both sites) until the test ends.
func startBackupd(t testing.TB, dir string, a, b *site) *proctest.Proc {
	t.Helper()
	metrics := proctest.FreePort(t)
	return proctest.StartProc(t, binDir, "backupd", metrics, "--key", filepath.Join(dir, "backupd"), "--metrics", metrics,
		"--site", fmt.Sprintf("A=%s,%s", a.Addr, a.Key("dbd.pub")), "--site", fmt.Sprintf("B=%s,%s", b.Addr, b.Key("dbd.pub")))
}
