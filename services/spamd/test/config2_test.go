package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestConfigByMailTwoSites: a configuration mail applied at site A changes
// what site B's spamd decides once backupd has replicated it, and one sent
// to site B changes site A; the admin's confirmation arrives (issue 7).
func TestConfigByMailTwoSites(t *testing.T) {
	dir := t.TempDir()
	z := &zone{txt: map[string]string{}}
	xKey := dkimKey(t, z, "x.test")
	dnsAddr := startDNS(t, z)

	type site struct {
		*proctest.DB
		name, smtp string
	}
	run(t, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	sites := []site{{name: "A"}, {name: "B"}}
	for i := range sites {
		s := &sites[i]
		s.DB = proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Dir: filepath.Join(dir, s.name), Site: s.name,
			Keys: spamdKeys(true), Clients: []string{"backupd " + filepath.Join(dir, "backupd.pub")}})
		s.Start()
	}
	proctest.StartProc(t, binDir, "backupd", "", "--key", filepath.Join(dir, "backupd"),
		"--site", "A="+sites[0].Addr+","+sites[0].Key("dbd.pub"), "--site", "B="+sites[1].Addr+","+sites[1].Key("dbd.pub"))
	admin := func(s site, args ...string) string {
		t.Helper()
		return run(t, "dbctl", append([]string{"--db", s.Addr, "--db-pub", s.Key("dbd.pub"), "--key", s.Key("admin")}, args...)...)
	}
	admin(sites[0], "mailbox", "add", "u@x.test")
	admin(sites[0], "mailbox", "add", "boss@x.test")
	boot := filepath.Join(dir, "boot.conf")
	os.WriteFile(boot, []byte("admin add boss@x.test\n"), 0o600)
	admin(sites[0], "config", "apply", boot)
	for i := range sites {
		s := &sites[i]
		s.smtp = proctest.FreePort(t)
		proctest.StartProc(t, binDir, "smtpd", s.smtp, "--db", s.Addr, "--db-pub", s.Key("dbd.pub"), "--key", s.Key("smtpd"), "--listen", s.smtp,
			"--hostname", "mx-"+s.name+".x.test", "--min-copies", "1", "--decision-window", "10s", "--greet-pause", "0s")
		proctest.StartProc(t, binDir, "spamd", "", "--db", s.Addr, "--db-pub", s.Key("dbd.pub"), "--key", s.Key("spamd"), "--config-key", s.Key("spamd-config"),
			"--dns", dnsAddr, "--grey-delay", "0", "--digest-every", "0", "--digest-smtp", s.smtp)
	}
	// Until replication brought the admin and the mailboxes to B, B's
	// smtpd does not know u@x.test: wait for that (bounded).
	waitFor(t, "the mailboxes and the admin at site B", func() bool {
		out := admin(sites[1], "config", "show")
		return strings.Contains(out, "admin add boss@x.test") && exec.Command(filepath.Join(binDir, "dbctl"), "--db", sites[1].Addr,
			"--db-pub", sites[1].Key("dbd.pub"), "--key", sites[1].Key("admin"), "find", "mailbox", "config@x.test").Run() == nil
	})
	n := 0
	spamAt := func(s site) int {
		n++
		return send(t, s.smtp, "bot@spam.example", "u@x.test", []byte("From: bot@spam.example\nTo: u@x.test\nSubject: offer "+
			strings.Repeat("!", n)+"\nMessage-ID: <two"+strings.Repeat("x", n)+"@spam.example>\n\nBuy.\n"))
	}
	if code := spamAt(sites[1]); code != 250 {
		t.Fatalf("site B before any config: %d, want 250", code)
	}
	// Block at site A; site B's spamd must refuse once replicated.
	mail := configMail(t, "boss@x.test", "two1", "block u@x.test @spam.example\n", "x.test", xKey)
	if code := send(t, sites[0].smtp, "boss@x.test", "config@x.test", mail); code != 250 {
		t.Fatalf("signed config mail at site A: %d, want 250", code)
	}
	waitFor(t, "site B refusing spam.example", func() bool { return spamAt(sites[1]) == 550 })
	// Unblock through site B; site A must accept again.
	mail = configMail(t, "boss@x.test", "two2", "unlist u@x.test @spam.example\n", "x.test", xKey)
	if code := send(t, sites[1].smtp, "boss@x.test", "config@x.test", mail); code != 250 {
		t.Fatalf("signed config mail at site B: %d, want 250", code)
	}
	waitFor(t, "site A accepting spam.example again", func() bool { return spamAt(sites[0]) == 250 })
	for _, s := range sites {
		if h := admin(s, "config", "history"); !strings.Contains(h, "block u@x.test @spam.example") || !strings.Contains(h, "unlist u@x.test @spam.example") {
			t.Errorf("site %s's history lacks a change:\n%s", s.name, h)
		}
	}
	store := mailbox.New(adminClient(t, sites[0].Addr, sites[0].Key("admin"), sites[0].Key("dbd.pub")))
	waitConfirmation(t, store, "boss@x.test", "twinmx config: applied", "unlist u@x.test @spam.example")
}

// waitFor polls cond (each call is a real request) until it holds, for at
// most 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
