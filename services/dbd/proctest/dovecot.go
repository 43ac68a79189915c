package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dovecot is a private Dovecot (Debian dovecot-imapd, dovecot-pop3d) on
// loopback over a Maildir, for tests and benchmarks that compare a twinmx
// server with it.
type Dovecot struct {
	Bin      string   // the dovecot binary
	Protocol string   // "imap" or "pop3"
	Dir      string   // its folder (config, Maildir, logs); "" is a fresh one
	Mails    [][]byte // the INBOX, in order (file names sort in slice order), unflagged
	// Passwd is its passwd-file: lines of "user:{SCHEME}password".
	Passwd string
	// Extra is more configuration (settings not set here, blocks).
	Extra string
}

// Nobody is the user Dovecot serves mail as when the test runs as root
// (it refuses root).
const Nobody = 65534

// Start writes the Maildir and the configuration, starts Dovecot on a
// free loopback port and waits until it listens. Dovecot dies with the
// test (and with the test process). It returns the listener's address and
// the process (for CPU and memory figures).
func (d Dovecot) Start(t testing.TB) (addr string, cmd *exec.Cmd) {
	t.Helper()
	dir := d.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, raw := range d.Mails {
		name := filepath.Join(md, "cur", fmt.Sprintf("%d.%06d.twinmx,S=%d:2,", 1700000000+i, i, len(raw)))
		if err := os.WriteFile(name, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(d.Passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = Nobody, Nobody
		// t.TempDir's parent is private to root.
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, Nobody, Nobody)
		}); err != nil {
			t.Fatal(err)
		}
	}
	addr = FreePort(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := fmt.Sprintf(`protocols = %[5]s
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
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[2]d gid=%[3]d home=%[1]s
}
service %[5]s-login {
  inet_listener %[5]s {
    port = %[4]s
  }
  inet_listener %[5]ss {
    port = 0
  }
}
%[6]s`, dir, uid, gid, port, d.Protocol, d.Extra)
	cfg := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &SyncBuffer{}
	cmd = exec.Command(d.Bin, "-F", "-c", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log (tail):\n%s%s", log, lastLines(string(b), 30))
		}
	})
	WaitListening(t, addr, 20*time.Second, log)
	return addr, cmd
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
