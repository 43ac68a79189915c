package daemon

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestSilentTLSClientClosed (TEST-CATALOG 51): a client that connects to
// the implicit-TLS port and never sends its ClientHello is closed after
// the pre-auth timeout, as one that is silent on the plain port is.
// Before, go-imap's greeting started the handshake with no read deadline
// set, and the handshake waited for the client for ever, holding a slot
// of --max-conns and --max-conns-per-ip: enough such connections locked
// every client out of both ports. The read deadline below is a hang
// guard, not a speed check.
func TestSilentTLSClientClosed(t *testing.T) {
	k := startWith(t, func(c *Config) { c.PreAuthTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", k.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("a client silent before the TLS handshake was not closed: %v", err)
	}
}
