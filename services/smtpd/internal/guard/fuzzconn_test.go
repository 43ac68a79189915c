package guard

import (
	"bytes"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// pipeListener hands out one connection, then blocks until closed.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// runPipeSession sends data after a 354 to a real go-smtp server through a
// guard Conn over net.Pipe, and returns the session's Data calls. With
// direct, the session reads Conn.Message.
func runPipeSession(t *testing.T, data []byte, direct bool) []dataCall {
	cfg := Config{GreetPause: -1, Hostname: "mx.test", IdleTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}.withDefaults()
	srvSide, cliSide := net.Pipe()
	defer cliSide.Close()
	gc := newConn(srvSide, connParams{cfg: &cfg})
	l := &pipeListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.conns <- gc
	be := &testBackend{direct: direct}
	s := smtp.NewServer(be)
	s.MaxLineLength = 0
	s.ErrorLog = log.New(io.Discard, "", 0)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(l)
	}()
	replies := make(chan struct{})
	go func() {
		defer close(replies)
		_, _ = io.Copy(io.Discard, cliSide)
	}()
	_ = cliSide.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = cliSide.Write([]byte("EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n"))
	_, _ = cliSide.Write(data)
	_, _ = cliSide.Write([]byte("\r\n.\r\nQUIT\r\n"))
	select {
	case <-gc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	_ = cliSide.Close()
	<-replies
	_ = s.Close()
	<-served
	return be.Datas()
}

// FuzzConnData: arbitrary client bytes after DATA, through the guard into a
// real go-smtp server, the session reading go-smtp's reader and then
// Conn.Message. The session's first Data call gets exactly the strictly
// parsed message when the data is clean, and a violation otherwise; no
// panic, no hang.
func FuzzConnData(f *testing.F) {
	for _, s := range []string{
		"", "a", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\n.\nMAIL FROM:<x@y>\r\n", "a\r\r\n.\r\n",
		"a\r\n.\rX", "..x\r\n.y\r\n", "\x00", "\r", ".", "\r\n.",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		full := append(bytes.Clone(data), "\r\n.\r\n"...)
		msg, end, clean := strictReference(full)
		if end < 0 {
			t.Fatal("reference found no end")
		}
		for _, direct := range []bool{false, true} {
			datas := runPipeSession(t, data, direct)
			if len(datas) == 0 {
				t.Fatalf("data %q (direct %v): no Data call", data, direct)
			}
			d := datas[0]
			if d.err != nil {
				t.Fatalf("data %q (direct %v): Data error %v", data, direct, d.err)
			}
			if clean && (d.violation != "" || !bytes.Equal(RestoreBareCR(bytes.Clone(d.body)), msg)) {
				t.Fatalf("clean data %q (direct %v): body %q violation %q, want %q", data, direct, d.body, d.violation, msg)
			}
			if !clean && d.violation == "" {
				t.Fatalf("unclean data %q (direct %v): no violation (body %q)", data, direct, d.body)
			}
		}
	})
}
