// Package test holds imapd's black-box tests: they build the real dbd
// and imapd binaries, run dbd and imapd as processes on 127.0.0.1,
// put an account and mail into dbd with the admin key, and drive imapd
// with real clients: Python's imaplib (the whole shared corpus, byte for
// byte) and mbsync (isync). The benchmark (bench_test.go) runs only
// with TWINMX_BENCH=1; deploy/bench/imap-bench.sh runs it.
//
// Environment:
//
//	TWINMX_REQUIRE_CLIENTS  fail instead of skip when python3, mbsync or dovecot is missing
//	TWINMX_REQUIRE_CORPUS   fail instead of skip when the mail corpus is missing
//	TWINMX_CORPUS           folder of the corpus (default ../../../../shared/corpus)
//	TWINMX_BENCH            run the benchmark against Dovecot
package test

import (
	"crypto/rand"
	"fmt"
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
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("imapd-bin-", map[string]string{
		"dbd": "../../dbd/cmd/dbd", "imapd": "../cmd/imapd", "backupd": "../../backupd/cmd/backupd",
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

const (
	login    = "alice"
	password = "correct horse"
	address  = "alice@x.example"
)

// site is one dbd and one imapd process.
type site struct {
	t        testing.TB
	dir      string
	dbAddr   string
	imapAddr string
	dbd      *exec.Cmd
	imapd    *exec.Cmd
	admin    *client.Client
	logs     []*proctest.SyncBuffer
}

func newSite(t testing.TB) *site { return newSiteWith(t, siteOptions{}) }

// siteOptions vary a site for the two-site tests.
type siteOptions struct {
	backupdPub string // a backupd public key dbd accepts (role backupd)
	noUser     bool   // the account comes by replication
}

func newSiteWith(t testing.TB, o siteOptions) *site {
	t.Helper()
	s := &site{t: t, dir: t.TempDir()}
	for _, name := range []string{"dbd", "admin", "mailbox"} {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(s.key(name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteKeyFiles(s.key(name), kp); err != nil {
			t.Fatal(err)
		}
	}
	clients := "admin keys/admin.pub\nmailbox keys/mailbox.pub\n"
	if o.backupdPub != "" {
		clients += "backupd " + o.backupdPub + "\n"
	}
	if err := os.WriteFile(filepath.Join(s.dir, "clients"), []byte(clients), 0o600); err != nil {
		t.Fatal(err)
	}
	s.dbAddr = proctest.FreePort(t)
	s.dbd = s.spawn("dbd", "--data", filepath.Join(s.dir, "data"), "--listen", s.dbAddr,
		"--key", s.key("dbd"), "--clients", filepath.Join(s.dir, "clients"))
	proctest.WaitListening(t, s.dbAddr, 20*time.Second, s.logs[0])
	pub, err := wire.LoadPublicKey(s.key("dbd.pub"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := wire.LoadKeyPair(s.key("admin"))
	if err != nil {
		t.Fatal(err)
	}
	s.admin, err = client.New(client.Config{Addr: s.dbAddr, Static: kp, Server: pub, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.admin.Close() })
	ctx := proctest.Ctx(t, time.Minute)
	if !o.noUser {
		if err := testkit.AddUser(ctx, s.admin, login, password, address); err != nil {
			t.Fatal(err)
		}
	}
	s.imapAddr = proctest.FreePort(t)
	s.imapd = s.spawn("imapd", "--listen", s.imapAddr, "--db", s.dbAddr, "--db-pub", s.key("dbd.pub"), "--key", s.key("mailbox"))
	proctest.WaitListening(t, s.imapAddr, 20*time.Second, s.logs[1])
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range s.logs {
				t.Logf("log tail:\n%s", tail(l.String(), 30))
			}
		}
	})
	return s
}

func (s *site) key(name string) string { return filepath.Join(s.dir, "keys", name) }

// spawn starts a binary that dies with the test.
func (s *site) spawn(name string, args ...string) *exec.Cmd {
	s.t.Helper()
	log := &proctest.SyncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.logs = append(s.logs, log)
	s.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// deliver stores mails one after the other, so UIDs follow the slice.
func (s *site) deliver(mails [][]byte) {
	s.t.Helper()
	ctx := proctest.Ctx(s.t, 5*time.Minute)
	for _, raw := range mails {
		if _, err := testkit.Deliver(ctx, s.admin, address, raw, true, time.Now()); err != nil {
			s.t.Fatal(err)
		}
	}
}

// need returns the path of a client program, or skips (fails with
// TWINMX_REQUIRE_CLIENTS=1) when it is missing.
func need(t testing.TB, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_CLIENTS") == "1" {
			t.Fatalf("%s not found (Debian package %s; TWINMX_REQUIRE_CLIENTS=1)", prog, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", prog, pkg)
	}
	return p
}

// loadCorpus reads every message of the shared corpus in its wire form
// (proctest.Corpus, proctest.WireForm). Mails that differ only in their
// Received fields are one mail and, in one mailbox, one receive row; it
// keeps the first of each.
func loadCorpus(t testing.TB) [][]byte {
	t.Helper()
	seen := map[model.Key]bool{}
	var out [][]byte
	for _, m := range proctest.Corpus(t) {
		raw := proctest.WireForm(m.Raw)
		k := model.NewMailRows(raw).MailKey
		if !seen[k] {
			seen[k] = true
			out = append(out, raw)
		}
	}
	return out
}
