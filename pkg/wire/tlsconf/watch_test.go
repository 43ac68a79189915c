package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// pemPair returns a self-signed certificate for name, valid for 90 days,
// and its key, PEM.
func pemPair(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	return pemPairUntil(t, name, time.Now().Add(90*24*time.Hour))
}

// pemPairUntil is pemPair with the certificate's not-after.
func pemPairUntil(t *testing.T, name string, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := SelfSignedPEM(name, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// handshake completes a TLS handshake with a server using cfg and returns
// the client's view of the connection.
func handshake(t *testing.T, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- tls.Server(a, cfg).Handshake() }()
	c := tls.Client(b, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState()
}

// servedName returns the common name of the certificate a server using
// cfg sends.
func servedName(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return handshake(t, cfg).PeerCertificates[0].Subject.CommonName
}

// syncLog is a log buffer safe for the Watch goroutine and the test.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestWatchedRenewal: a renewed certificate is served to the next TLS
// session without a restart, and only a pair that loads whole is taken:
// a certificate renewed before its key, a half-written file and a
// missing file each leave the previous pair in service, logged once.
func TestWatchedRenewal(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certA, keyA := pemPair(t, "a.test")
	certB, keyB := pemPair(t, "b.test")
	write(certFile, certA)
	write(keyFile, keyA)
	logs := &syncLog{}
	w, err := NewWatched(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config()
	const reloaded, refused = "TLS certificate reloaded", "do not load; serving the previous certificate"

	steps := []struct {
		name         string
		change       func()
		took         bool
		served       string
		refusals     int
		reloadsSoFar int
	}{
		{"unchanged", func() {}, false, "a.test", 0, 0},
		{"certificate renewed, key not yet", func() { write(certFile, certB) }, false, "a.test", 1, 0},
		{"the same mismatch again: not logged again", func() {}, false, "a.test", 1, 0},
		{"key renewed too", func() { write(keyFile, keyB) }, true, "b.test", 1, 1},
		{"half a certificate written", func() { write(certFile, certA[:len(certA)/2]) }, false, "b.test", 2, 1},
		{"key file removed", func() { os.Remove(keyFile) }, false, "b.test", 3, 1},
		{"still removed: not logged again", func() {}, false, "b.test", 3, 1},
		{"the first pair back", func() { write(certFile, certA); write(keyFile, keyA) }, true, "a.test", 3, 2},
	}
	for _, s := range steps {
		s.change()
		if took := w.Check(); took != s.took {
			t.Fatalf("%s: Check = %v, want %v\n%s", s.name, took, s.took, logs.b.String())
		}
		if got := servedName(t, cfg); got != s.served {
			t.Fatalf("%s: served %s, want %s", s.name, got, s.served)
		}
		if got := logs.count(refused); got != s.refusals {
			t.Fatalf("%s: %d refusals logged, want %d\n%s", s.name, got, s.refusals, logs.b.String())
		}
		if got := logs.count(reloaded); got != s.reloadsSoFar {
			t.Fatalf("%s: %d reloads logged, want %d", s.name, got, s.reloadsSoFar)
		}
	}

	// FromFlags with files watches them until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w2, err := NewWatched(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w2.Watch(ctx, 10*time.Millisecond) }()
	write(certFile, certB)
	write(keyFile, keyB)
	deadline := time.Now().Add(10 * time.Second)
	for servedName(t, w2.Config()) != "b.test" {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not take the renewed pair within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestFromFlagsFiles: the files given, FromFlags serves them (and a pair
// that does not load is an error at start, not a listener without TLS).
func TestFromFlagsFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, key := pemPair(t, "mx.test")
	_, otherKey := pemPair(t, "other.test")
	for path, b := range map[string][]byte{certFile: cert, keyFile: otherKey} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := FromFlags(ctx, slog.Default(), certFile, keyFile, false, "x"); err == nil {
		t.Fatal("a key that does not match the certificate was accepted")
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := FromFlags(ctx, slog.Default(), certFile, keyFile, false, "x")
	if err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, cfg); got != "mx.test" {
		t.Fatalf("served %s, want mx.test", got)
	}
}

// TestExpiryGauge: the gauge shows the expiry of the certificate served
// now: a self-signed one's, and a watched one's before and after a
// renewal.
func TestExpiryGauge(t *testing.T) {
	self, err := SelfSignedTLS("mx.test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := testutil.ToFloat64(ExpiryGauge(self)), float64(servedLeaf(self).NotAfter.Unix()); got != want || got < float64(time.Now().Unix()) {
		t.Fatalf("self-signed: %v, want %v", got, want)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	soon, later := time.Now().Add(5*24*time.Hour).Truncate(time.Second), time.Now().Add(90*24*time.Hour).Truncate(time.Second)
	write := func(cert, key []byte) {
		t.Helper()
		if err := os.WriteFile(certFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pemPairUntil(t, "mx.test", soon))
	w, err := NewWatched(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	g := ExpiryGauge(w.Config())
	if got := testutil.ToFloat64(g); got != float64(soon.Unix()) {
		t.Fatalf("before the renewal: %v, want %v", got, soon.Unix())
	}
	write(pemPairUntil(t, "mx.test", later))
	if !w.Check() {
		t.Fatal("the renewed pair was not taken")
	}
	if got := testutil.ToFloat64(g); got != float64(later.Unix()) {
		t.Fatalf("after the renewal: %v, want %v", got, later.Unix())
	}
	if problems, err := testutil.CollectAndLint(g); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", problems, err)
	}
	if got := testutil.ToFloat64(ExpiryGauge(&tls.Config{})); !math.IsNaN(got) {
		t.Fatalf("no certificate: %v, want NaN", got)
	}
}

// TestWatchedHalfWrittenChain: a chain file read while it is being
// written, its leaf whole and the intermediate after it cut off, is
// refused (X509KeyPair alone takes the blocks that decode and would serve
// the leaf without its intermediate); the whole chain is taken once it is
// there.
func TestWatchedHalfWrittenChain(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certA, keyA := pemPair(t, "a.test")
	certB, keyB := pemPair(t, "b.test")
	inter, _ := pemPair(t, "intermediate.test") // stands in for an intermediate
	write(certFile, certA)
	write(keyFile, keyA)
	w, err := NewWatched(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config()
	chain := append(append([]byte{}, certB...), inter...)
	write(keyFile, keyB)
	write(certFile, chain[:len(certB)+len(inter)/2])
	if w.Check() {
		t.Fatal("a chain cut off in its intermediate was taken")
	}
	if got := servedName(t, cfg); got != "a.test" {
		t.Fatalf("served %s after the cut chain, want a.test", got)
	}
	write(certFile, chain)
	if !w.Check() {
		t.Fatal("the whole chain was not taken")
	}
	if n := len(handshake(t, cfg).PeerCertificates); n != 2 {
		t.Fatalf("%d certificates served, want the chain of 2", n)
	}
	if _, err := NewWatched(filepath.Join(dir, "cut.pem"), keyFile, slog.Default()); err == nil {
		t.Fatal("a missing file loaded")
	}
	write(filepath.Join(dir, "cut.pem"), chain[:len(chain)-40])
	if _, err := NewWatched(filepath.Join(dir, "cut.pem"), keyFile, slog.Default()); err == nil {
		t.Fatal("a cut chain loaded at start")
	}
}
