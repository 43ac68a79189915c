package server

import (
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// emfileListener fails its first two Accepts with EMFILE, as a listener
// does when the process is out of file descriptors, then accepts.
type emfileListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.failures.Add(1) <= 2 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorKeepsServing: a failed accept that is not the listener
// being closed (EMFILE: a moment without file descriptors) does not end
// Serve; the next client is served. Serve returned on any error but a
// timeout, and pop3d stopped listening.
func TestAcceptErrorKeepsServing(t *testing.T) {
	e := startEnv(t, Config{})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(&emfileListener{Listener: tcp}, Plain) }()
	c := dialPOP(t, tcp.Addr().String())
	if got := c.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("CAPA after failed accepts: %q", got)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v after a failed accept", err)
	default:
	}
}
