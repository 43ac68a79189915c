package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// needDovecotPOP3 returns the path of the dovecot binary, or skips (fails
// with TWINMX_REQUIRE_CLIENTS=1) when it or its POP3 server (Debian
// dovecot-pop3d) is missing. It looks in /usr/sbin too, which is not in
// every user's PATH.
func needDovecotPOP3(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dovecot")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
			p = "/usr/sbin/dovecot"
		}
	}
	if p == "" {
		return requireTool(t, "dovecot", "dovecot-pop3d")
	}
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		return requireTool(t, "/usr/lib/dovecot/pop3", "dovecot-pop3d")
	}
	return p
}

// startDovecotPOP3 starts a private Dovecot POP3 server on 127.0.0.1
// over a Maildir that holds mails, stored as given, in order (the file
// names sort in slice order, so Dovecot numbers them in slice order).
// Login user with password pass (a passwd-file: the password may hold
// spaces). No login delay or penalty: the differential sends wrong
// passwords. Dovecot dies with the test; it returns the listener's address.
func startDovecotPOP3(t *testing.T, user, pass string, mails [][]byte) string {
	t.Helper()
	dovecot := needDovecotPOP3(t)
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, raw := range mails {
		name := filepath.Join(md, "cur", fmt.Sprintf("%d.%06d.diff,S=%d:2,", 1700000000+i, i, len(raw)))
		if err := os.WriteFile(name, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(user+":{PLAIN}"+pass+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Dovecot refuses to serve mail as root: as root, let nobody own it.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = nobody, nobody
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		chownTree(t, dir)
	}
	addr := proctest.FreePort(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := fmt.Sprintf(`protocols = pop3
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
first_valid_uid = 0
mail_location = maildir:%[1]s/Maildir
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[2]d gid=%[3]d home=%[1]s
}
service pop3-login {
  inet_listener pop3 {
    port = %[4]s
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, uid, gid, port)
	cfg := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &proctest.SyncBuffer{}
	dc := exec.Command(dovecot, "-F", "-c", cfg)
	dc.Stdout, dc.Stderr = log, log
	dieWithTest(dc)
	if err := dc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dc.Process.Kill()
		dc.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log (tail):\n%s%s", log, tail(string(b), 20))
		}
	})
	proctest.WaitListening(t, addr, 20*time.Second, log)
	return addr
}
