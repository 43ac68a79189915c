package proctest

import (
	"bytes"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// mailboxScripts print every message of a mailbox, each as its byte
// length, a newline and the bytes: Python's poplib (RETR of each; it
// undoes the dot-stuffing) and imaplib (UID FETCH BODY.PEEK[] of INBOX).
// Arguments: host, port, user, password.
var mailboxScripts = map[string]string{"pop3": `
import poplib, sys
m = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=60)
m.user(sys.argv[3]); m.pass_(sys.argv[4])
n = len(m.list()[1])
out = sys.stdout.buffer
for i in range(1, n + 1):
    data = b"\r\n".join(m.retr(i)[1]) + b"\r\n"
    out.write(b"%d\n" % len(data)); out.write(data)
m.quit()
`, "imap": `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login(sys.argv[3], sys.argv[4])
typ, data = m.select("INBOX", readonly=True)
out = sys.stdout.buffer
if int(data[0]) > 0:
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    for part in data:
        if isinstance(part, tuple):
            out.write(b"%d\n" % len(part[1])); out.write(part[1])
m.logout()
`}

// ReadMailbox reads every mail of a mailbox as a real client does: proto
// "pop3" (Python's poplib) or "imap" (imaplib, INBOX), at addr, logged in
// as user with password. python is the interpreter's path.
func ReadMailbox(t testing.TB, python, proto, addr, user, password string) [][]byte {
	t.Helper()
	script, ok := mailboxScripts[proto]
	if !ok {
		t.Fatalf("ReadMailbox: unknown protocol %q", proto)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("ReadMailbox: %v", err)
	}
	out, err := exec.CommandContext(Ctx(t, 3*time.Minute), python, "-c", script, host, port, user, password).Output()
	if err != nil {
		t.Fatalf("%s at %s: %v", proto, addr, err)
	}
	var mails [][]byte
	for len(out) > 0 {
		nl := bytes.IndexByte(out, '\n')
		n, err := strconv.Atoi(string(out[:max(nl, 0)]))
		if nl < 0 || err != nil || nl+1+n > len(out) {
			t.Fatalf("%s at %s: output cut at %d bytes", proto, addr, len(out))
		}
		mails = append(mails, out[nl+1:nl+1+n])
		out = out[nl+1+n:]
	}
	return mails
}
