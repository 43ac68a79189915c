package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// WatchInterval is how often FromFlags's certificate files are read for a
// renewal: certbot and its kind renew weeks before expiry, so a minute's
// delay costs nothing, and reading two small files a minute is free.
const WatchInterval = time.Minute

// Watched is a certificate from PEM files that is replaced when the files
// change, so a renewed certificate is served to new TLS sessions without
// restarting the service (open sessions keep theirs). A new pair is taken
// only when it loads whole (certificate and key parse and match): a file
// read while certbot or an operator rewrites it, or a certificate renewed
// before its key, is refused and logged, and the old pair is served until
// the next check finds a good one.
type Watched struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]
	// Only Watch's goroutine (or a test calling Check) touches these.
	certPEM, keyPEM []byte // the pair in force
	refused         string // what was last refused and logged: the pair's content, or the read error
}

// NewWatched loads the pair; an error if it does not load.
func NewWatched(certFile, keyFile string, log *slog.Logger) (*Watched, error) {
	w := &Watched{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := w.read()
	if err == nil {
		err = w.take(certPEM, keyPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return w, nil
}

// Config returns a server configuration that serves the pair in force.
func (w *Watched) Config() *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return w.cur.Load(), nil },
		MinVersion:     tls.VersionTLS12,
	}
}

// Watch checks the files every interval until ctx ends.
func (w *Watched) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check()
		}
	}
}

// Check reads the files and serves their pair if it changed and loads
// whole; it reports whether a new pair is now served.
func (w *Watched) Check() bool {
	certPEM, keyPEM, err := w.read()
	if err != nil {
		w.refuse("read error: "+err.Error(), err)
		return false
	}
	if bytes.Equal(certPEM, w.certPEM) && bytes.Equal(keyPEM, w.keyPEM) {
		w.refused = ""
		return false
	}
	if err := w.take(certPEM, keyPEM); err != nil {
		w.refuse(string(certPEM)+"\x00"+string(keyPEM), err)
		return false
	}
	w.refused = ""
	leaf := w.cur.Load().Leaf
	w.log.Info("TLS certificate reloaded", "cert", w.certFile, "subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return true
}

func (w *Watched) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(w.certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(w.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// take parses the pair and serves it.
func (w *Watched) take(certPEM, keyPEM []byte) error {
	if err := wholePEM(certPEM); err != nil {
		return fmt.Errorf("certificate file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if cert.Leaf == nil { // filled by X509KeyPair since Go 1.23; parsed here for older toolchains
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return err
		}
	}
	w.cur.Store(&cert)
	w.certPEM, w.keyPEM = certPEM, keyPEM
	return nil
}

// wholePEM checks that every PEM block begun in b decodes. X509KeyPair
// takes the certificate blocks that decode and skips the rest, so a chain
// file read while it is being written (the leaf whole, the intermediate
// cut off) would load, and be served without its intermediate until the
// next check: clients that verify it would fail meanwhile.
func wholePEM(b []byte) error {
	begun := bytes.Count(b, []byte("-----BEGIN "))
	decoded := 0
	for rest := b; ; decoded++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
	}
	if decoded < begun {
		return fmt.Errorf("%d of its %d PEM blocks do not decode (a file being written?)", begun-decoded, begun)
	}
	return nil
}

// refuse logs what did not load, once for each distinct content or read
// error (a file that stays half-written is not logged every minute).
func (w *Watched) refuse(what string, err error) {
	if what == w.refused {
		return
	}
	w.refused = what
	w.log.Error("TLS certificate files changed but do not load; serving the previous certificate",
		"cert", w.certFile, "key", w.keyFile, "err", err)
}
