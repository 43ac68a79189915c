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
	return runPipe(t, direct, []byte("EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n"),
		data, []byte("\r\n.\r\nQUIT\r\n")).Datas()
}

// runPipe writes each of writes in turn, as one client, to a real go-smtp
// server through a guard Conn over net.Pipe, closes the client side and
// returns the backend once the session has ended. It fails the test if
// the session does not end.
func runPipe(t *testing.T, direct bool, writes ...[]byte) *testBackend {
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
	for _, w := range writes {
		if _, err := cliSide.Write(w); err != nil {
			break // the guard closed the connection
		}
	}
	_ = cliSide.Close()
	select {
	case <-gc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	<-replies
	_ = s.Close()
	<-served
	return be
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

// FuzzConnCommands: arbitrary client bytes in command mode, in each state
// of a transaction (fresh, after EHLO, after MAIL, after RCPT), through the
// guard into a real go-smtp server. No panic, the session always ends when
// the client goes away, and no sender or recipient with a control byte
// reaches the session (TEST-CATALOG item 27).
func FuzzConnCommands(f *testing.F) {
	for _, seed := range []struct {
		state byte
		data  string
	}{
		{0, "EHLO 0\nAUTH \x0b"}, {0, "HELO x\rX-Injected: 1\r\n"}, {1, "MAIL FROM:<a\rb@c>\r\n"},
		{2, "RCPT TO:<\"a\r\nb\"@c>\r\n"}, {3, "DATA\r\nx\r\n.\r\n"}, {3, "DATA\r\nno end"},
		{1, "STARTTLS\r\nMAIL FROM:<x@y>\r\n"}, {0, "\r\n\r\n\r\n\n\n"}, {2, "BDAT 5 LAST\r\nhello"},
		{0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, {1, "MAIL FROM:<a@b> SIZE=99999999999999999999\r\n"},
	} {
		f.Add(seed.state, []byte(seed.data))
	}
	prefixes := []string{
		"",
		"EHLO c\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\n",
		"EHLO c\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<r@mx.test>\r\n",
	}
	f.Fuzz(func(t *testing.T, state byte, data []byte) {
		if len(data) > 1<<14 {
			return
		}
		be := runPipe(t, state&4 != 0, []byte(prefixes[int(state)%len(prefixes)]), data, []byte("\r\nQUIT\r\n"))
		for _, m := range be.Mails() {
			if controlByte([]byte(m)) >= 0 {
				t.Fatalf("MAIL FROM %q with a control byte reached the session", m)
			}
		}
		for _, r := range be.Rcpts() {
			if controlByte([]byte(r)) >= 0 {
				t.Fatalf("RCPT TO %q with a control byte reached the session", r)
			}
		}
	})
}
