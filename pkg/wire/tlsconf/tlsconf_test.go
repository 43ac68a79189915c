package tlsconf

import (
	"context"
	"crypto/tls"
	"log/slog"
	"testing"
)

// TestSelfSigned: a client that skips verification completes a TLS 1.2+
// handshake with the self-signed configuration.
func TestSelfSigned(t *testing.T) {
	cfg, err := SelfSignedTLS("mx.test")
	if err != nil {
		t.Fatal(err)
	}
	st := handshake(t, cfg)
	if st.Version < tls.VersionTLS12 {
		t.Fatalf("TLS version %x", st.Version)
	}
	if got := st.PeerCertificates[0].Subject.CommonName; got != "mx.test" {
		t.Fatalf("certificate for %q, want mx.test", got)
	}
}

func TestFromFlags(t *testing.T) {
	if c, err := FromFlags(context.Background(), slog.Default(), "", "", false, "x"); c != nil || err != nil {
		t.Fatalf("no flags = %v, %v; want no TLS", c, err)
	}
	if c, err := FromFlags(context.Background(), slog.Default(), "", "", true, "x"); c == nil || err != nil {
		t.Fatalf("self-signed = %v, %v", c, err)
	}
	if _, err := FromFlags(context.Background(), slog.Default(), "/nonexistent.crt", "", true, "x"); err == nil {
		t.Fatal("a missing certificate file was accepted (files win over self-signed)")
	}
}
