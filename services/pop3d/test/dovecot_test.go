package test

import (
	"os"
	"os/exec"
	"testing"

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
	addr, _ := proctest.Dovecot{Bin: needDovecotPOP3(t), Protocol: "pop3", Mails: mails,
		Passwd: user + ":{PLAIN}" + pass + "\n",
		Extra:  "auth_failure_delay = 0\nlogin_trusted_networks = 127.0.0.0/8\n"}.Start(t)
	return addr
}
