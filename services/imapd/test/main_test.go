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
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("imapd-bin-", map[string]string{
		"dbd": "../../dbd/cmd/dbd", "dbctl": "../../dbd/cmd/dbctl", "imapd": "../cmd/imapd", "backupd": "../../backupd/cmd/backupd",
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
	*proctest.DB
	imapAddr string
	imapd    *proctest.Proc
}

func newSite(t testing.TB) *site { return newSiteWith(t, siteOptions{}) }

// siteOptions vary a site for the two-site tests.
type siteOptions struct {
	backupdPub string   // a backupd public key dbd accepts (role backupd)
	noUser     bool     // the account comes by replication
	flags      []string // more imapd flags
	deployed   bool     // dbd and imapd with their env files' runtime settings (benchmarks)
}

func newSiteWith(t testing.TB, o siteOptions) *site {
	t.Helper()
	cfg := proctest.DBConfig{Bin: binDir, Keys: map[string]string{"mailbox": "mailbox"}}
	if o.backupdPub != "" {
		cfg.Clients = []string{"backupd " + o.backupdPub}
	}
	if o.deployed {
		cfg.Env = proctest.RuntimeEnv(t, "dbd")
	}
	s := &site{DB: proctest.NewDB(t, cfg)}
	s.Start()
	if !o.noUser {
		if err := testkit.AddUser(proctest.Ctx(t, time.Minute), s.Client(), login, password, address); err != nil {
			t.Fatal(err)
		}
	}
	s.imapAddr = proctest.FreePort(t)
	args := append([]string{"--listen", s.imapAddr}, s.DBFlags("mailbox")...)
	s.imapd = proctest.NewProc(t, binDir, "imapd", s.imapAddr, append(args, o.flags...)...)
	if o.deployed {
		s.imapd.Env = proctest.RuntimeEnv(t, "imapd")
	}
	s.imapd.Start()
	return s
}

// deliver stores mails one after the other, so UIDs follow the slice.
func (s *site) deliver(mails [][]byte) {
	s.T().Helper()
	ctx := proctest.Ctx(s.T(), 5*time.Minute)
	for _, raw := range mails {
		if _, err := testkit.Deliver(ctx, s.Client(), address, raw, true, time.Now()); err != nil {
			s.T().Fatal(err)
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
