package imapserver_test

// twinmx: go-imap's own tests are left out of this copy; this one guards
// a twinmx patch (TWINMX-PATCH.md).

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// scriptedConn is a client connection that sends its steps in turn, each
// bytes or a read error, then EOF. What the server writes is kept.
type scriptedConn struct {
	mu     sync.Mutex
	steps  []any // string or error
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.steps) == 0 {
		return 0, io.EOF
	}
	switch s := c.steps[0].(type) {
	case error:
		c.steps = c.steps[1:]
		return 0, s
	case string:
		n := copy(p, s)
		if n == len(s) {
			c.steps = c.steps[1:]
		} else {
			c.steps[0] = s[n:]
		}
		return n, nil
	}
	panic("bad step")
}

func (c *scriptedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *scriptedConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *scriptedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptedConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 143}
}
func (c *scriptedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener hands out one connection, then waits to be closed.
type oneConnListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 143} }

// session records CREATEs; its Append reads as much of the literal as
// readAppend says, then refuses or accepts it.
type session struct {
	imapserver.Session // the rest: unused here
	mu                 sync.Mutex
	created            []string
	readAppend         bool
}

func (s *session) Close() error                              { return nil }
func (s *session) Login(string, string) error                { return nil }
func (s *session) Poll(*imapserver.UpdateWriter, bool) error { return nil }
func (s *session) Create(name string, _ *imap.CreateOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created = append(s.created, name)
	return nil
}
func (s *session) Append(_ string, r imap.LiteralReader, _ *imap.AppendOptions) (*imap.AppendData, error) {
	if s.readAppend {
		_, err := io.Copy(io.Discard, r)
		return nil, err
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
}

// serve runs a server on one scripted connection until it ends.
func serve(t *testing.T, sess *session, steps ...any) string {
	t.Helper()
	return serveSession(t, sess, steps...)
}

// serveSession is serve for any session.
func serveSession(t *testing.T, sess imapserver.Session, steps ...any) string {
	t.Helper()
	conn := &scriptedConn{steps: steps, closed: make(chan struct{})}
	ln := &oneConnListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
	ln.conns <- conn
	srv := imapserver.New(&imapserver.Options{
		NewSession:   func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) { return sess, nil, nil },
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
		Logger:       discardLogger{},
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-conn.closed:
	case <-time.After(20 * time.Second): // a hang guard, not a measure
		t.Fatalf("the connection did not end; it got %q", conn.output())
	}
	srv.Close()
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v", err)
	}
	return conn.output()
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// TestAppendLiteralReadFails: a read error (a timeout: the client
// stalled for literalReadTimeout) while the rest of a refused APPEND's
// literal is discarded. handleAppend returned err, nil there: the APPEND
// got no answer and the connection went on, so the rest of the literal,
// sent later, was read as commands ("c CREATE evil" ran). Now the
// APPEND is answered and the connection ends.
func TestAppendLiteralReadFails(t *testing.T) {
	sess := &session{}
	out := serve(t, sess,
		"a LOGIN u p\r\n",
		"b APPEND INBOX {100}\r\n",
		"From: x\r\n",
		os.ErrDeadlineExceeded,
		"c CREATE evil\r\n",
	)
	if len(sess.created) > 0 {
		t.Errorf("the literal's rest ran as commands: CREATE %q", sess.created)
	}
	if !strings.Contains(out, "\r\nb NO ") {
		t.Errorf("the APPEND got no answer: %q", out)
	}
}

// TestAppendLiteralWithoutCRLF: an APPEND whose literal is not followed by
// the end of the line is a syntax error (BAD); it went unanswered.
func TestAppendLiteralWithoutCRLF(t *testing.T) {
	sess := &session{readAppend: true}
	out := serve(t, sess,
		"a LOGIN u p\r\n",
		"b APPEND INBOX {5}\r\nhelloX\r\n",
		"c NOOP\r\n",
	)
	if !strings.Contains(out, "\r\nb BAD ") {
		t.Errorf("APPEND with bytes after its literal: %q, want b BAD", out)
	}
	if !strings.Contains(out, "\r\nc OK ") {
		t.Errorf("the session after it: %q, want c OK", out)
	}
}
