package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// writeCertFiles writes a self-signed certificate for localhost and its
// key as PEM files in dir, as certbot leaves them.
func writeCertFiles(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := tlsconf.SelfSignedPEM("localhost", time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSCertificateFiles: pop3d started with --tls-cert and --tls-key
// (the deployed setup; the other tests use --tls-self-signed) serves that
// certificate on its implicit-TLS port, and Python's poplib, verifying it
// against the certificate as its only trusted root and checking the host
// name, logs in and reads the mailbox. (Renewals: pkg/wire/tlsconf
// TestWatchedRenewal.)
func TestTLSCertificateFiles(t *testing.T) {
	requireTool(t, "python3", "python3")
	s := newSite(t, "A", "")
	s.user("alice", "alice password", "alice@x.example")
	mails := sampleMails(t)[:3]
	deliverAll(t, s, "alice@x.example", mails)
	certFile, keyFile := writeCertFiles(t, t.TempDir())
	tlsAddr := proctest.FreePort(t)
	p := s.startPOP3D("", "--tls-listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	proctest.WaitListening(t, tlsAddr, 20*time.Second, p.Log)
	_, port, _ := strings.Cut(tlsAddr, ":")
	script := filepath.Join(t.TempDir(), "pop3s.py")
	if err := os.WriteFile(script, []byte(`import poplib, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3_SSL(host, port, context=ctx, timeout=30)
p.user("alice")
p.pass_("alice password")
print(p.stat()[0], p.sock.getpeercert()["subject"][0][0][1])
p.quit()
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := pythonScript(t, script, "localhost", port, certFile), "3 localhost"; got != want {
		t.Fatalf("poplib over TLS: %q, want %q", got, want)
	}
}
