package tlsconf

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
)

// TestSelfSigned: a client that skips verification completes a TLS 1.2+
// handshake with the self-signed configuration.
func TestSelfSigned(t *testing.T) {
	cfg, err := SelfSignedTLS("mx.test")
	if err != nil {
		t.Fatal(err)
	}
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
	if v := c.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("TLS version %x", v)
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
