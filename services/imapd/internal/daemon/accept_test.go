package daemon

import (
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/wire/connlimit"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

// failingListener fails its first Accept with EMFILE, as a listener does
// when the process has run out of file descriptors, then accepts.
type failingListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorKeepsServing: a failed Accept that is not the listener
// being closed (EMFILE: out of file descriptors, a moment of load) does
// not stop the listener. Before, the dispatcher returned on it, which
// closed its go-imap listeners; Serve then returned nil and Run shut
// imapd down with no error (exit status 0, so a supervisor restarting on
// failure left it down).
func TestAcceptErrorKeepsServing(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: tcp}
	conns := &registry{conns: map[*countingConn]struct{}{}}
	d := newDispatcher(ln, metrics.New(prometheus.NewRegistry()), conns, connlimit.New(-1, -1), nil,
		slog.New(slog.DiscardHandler), func(net.Conn) bool { return false })
	done := make(chan struct{})
	go func() { defer close(done); d.run() }()
	defer func() { tcp.Close(); <-done }()

	c, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := d.strict.Accept()
	if err != nil {
		t.Fatalf("after a failed accept the listener gave %v; want the next connection", err)
	}
	got.Close()
	if !ln.failed.Load() {
		t.Fatal("the failing accept was not reached")
	}
}
