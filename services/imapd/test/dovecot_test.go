package test

import (
	"os"
	"os/exec"
	"testing"

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
// all unflagged, with "/" as the hierarchy separator. Dovecot dies with
// the test.
func startDovecot(t testing.TB, mails [][]byte) dovecotServer {
	t.Helper()
	// imap_zlib offers COMPRESS=DEFLATE (RFC 4978) after login, as imapd
	// does; it changes nothing for a client that does not ask.
	addr, _ := proctest.Dovecot{Bin: needDovecot(t), Protocol: "imap", Mails: mails,
		Passwd: "bench:{PLAIN}benchpw\n", Extra: "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"}.Start(t)
	return dovecotServer{addr: addr, user: "bench", pass: "benchpw"}
}
