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

// dovecotServer is a private Dovecot (Debian dovecot-imapd) serving one
// Maildir INBOX on 127.0.0.1, started by startDovecot.
type dovecotServer struct {
	addr string // host:port of its IMAP listener
	user string
	pass string
}

// needDovecot returns the path of the dovecot binary, or skips (fails
// with TWINMX_REQUIRE_CLIENTS=1) when it is missing. It looks in
// /usr/sbin too, which is not in every user's PATH.
func needDovecot(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot"
	}
	return need(t, "dovecot", "dovecot-imapd")
}

// startDovecot starts Dovecot over a Maildir whose INBOX holds mails, in
// order (the file names sort in slice order, so UIDs follow the slice),
// all unflagged. Dovecot dies with the test.
func startDovecot(t testing.TB, mails [][]byte) dovecotServer {
	t.Helper()
	dovecot := needDovecot(t)
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, raw := range mails {
		name := filepath.Join(md, "cur", fmt.Sprintf("%d.%06d.bench,S=%d:2,", 1700000000+i, i, len(raw)))
		if err := os.WriteFile(name, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Dovecot refuses to serve mail as root: as root, let nobody own it.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := filepath.Walk(md, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	dport := strings.Split(proctest.FreePort(t), ":")[1]
	conf := fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 0
mail_location = maildir:%[1]s/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = static
  args = password=benchpw
}
userdb {
  driver = static
  args = uid=%[2]d gid=%[3]d home=%[1]s
}
service imap-login {
  inet_listener imap {
    port = %[4]s
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
}
`, dir, uid, gid, dport)
	cfg := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	dc := exec.Command(dovecot, "-F", "-c", cfg)
	log := &proctest.SyncBuffer{}
	dc.Stdout, dc.Stderr = log, log
	if err := dc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Process.Kill(); dc.Wait() })
	addr := "127.0.0.1:" + dport
	proctest.WaitListening(t, addr, 20*time.Second, log)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", tail(string(b), 20))
		}
	})
	return dovecotServer{addr: addr, user: "bench", pass: "benchpw"}
}
