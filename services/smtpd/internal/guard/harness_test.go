package guard

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// testBackend records what go-smtp hands the session, and checks
// DataViolation the way the real session must. With direct set, its
// sessions read the message through Conn.Message, as smtpd's does.
type testBackend struct {
	direct bool
	// stores: a session tells the Conn of each clean message it takes
	// (DataStored), as smtpd's does once the mail is stored. Set it
	// under mu.
	stores bool
	// stopAfter > 0: a direct session reads that many bytes and refuses
	// the message, as smtpd does over its size limit; it sends on stopped
	// (if not nil) once it has read them.
	stopAfter int
	stopped   chan struct{}
	mu        sync.Mutex
	conns     []*Conn
	sessions  []*testSession
	mails     []string
	rcpts     []string
	datas     []dataCall
}

type dataCall struct {
	from      string
	body      []byte
	err       error
	violation string
	extended  bool // Conn.Extended when Data was called
}

func (b *testBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	gc, ok := c.Conn().(*Conn)
	if !ok {
		return nil, fmt.Errorf("conn is %T, not *guard.Conn", c.Conn())
	}
	b.mu.Lock()
	s := &testSession{be: b, gc: gc, loggedOut: make(chan struct{})}
	b.conns = append(b.conns, gc)
	b.sessions = append(b.sessions, s)
	b.mu.Unlock()
	return s, nil
}

func (b *testBackend) Mails() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.mails...)
}

func (b *testBackend) Rcpts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.rcpts...)
}

func (b *testBackend) Datas() []dataCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]dataCall(nil), b.datas...)
}

func (b *testBackend) Conns() []*Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Conn(nil), b.conns...)
}

func (b *testBackend) Sessions() []*testSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*testSession(nil), b.sessions...)
}

type testSession struct {
	be        *testBackend
	gc        *Conn
	from      string
	loggedOut chan struct{}
	once      sync.Once
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	s.be.mu.Lock()
	s.be.mails = append(s.be.mails, from)
	s.be.mu.Unlock()
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "later@") {
		// As smtpd's session answers a recipient of another spam policy,
		// and go-smtp one over Server.MaxRecipients.
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Send this recipient in another transaction"}
	}
	s.be.mu.Lock()
	s.be.rcpts = append(s.be.rcpts, to)
	s.be.mu.Unlock()
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	if s.be.direct {
		r = s.gc.Message()
	}
	if n := s.be.stopAfter; n > 0 {
		r = io.LimitReader(r, int64(n))
	}
	body, err := io.ReadAll(r)
	v := s.gc.DataViolation()
	s.be.mu.Lock()
	s.be.datas = append(s.be.datas, dataCall{from: s.from, body: body, err: err, violation: v, extended: s.gc.Extended()})
	s.be.mu.Unlock()
	if err != nil {
		return err
	}
	if s.be.stopAfter > 0 && len(body) == s.be.stopAfter {
		if s.be.stopped != nil {
			s.be.stopped <- struct{}{}
		}
		return smtp.ErrDataTooLarge
	}
	if v != "" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message contains " + v}
	}
	s.be.mu.Lock()
	stores := s.be.stores
	s.be.mu.Unlock()
	if stores {
		s.gc.DataStored("stored")
	}
	return nil
}

func (s *testSession) Reset() { s.from = "" }
func (s *testSession) Logout() error {
	s.once.Do(func() { close(s.loggedOut) })
	return nil
}

type testServer struct {
	addr string
	be   *testBackend
	l    *Listener
}

// startServer runs a real go-smtp server behind a guard Listener on
// 127.0.0.1. The greeting test is off unless cfg sets GreetPause.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startServerReading(t, cfg, false)
}

// bothReaders runs f as two subtests: the session reading go-smtp's DATA
// reader, and reading Conn.Message (direct).
func bothReaders(t *testing.T, f func(t *testing.T, direct bool)) {
	t.Run("go-smtp", func(t *testing.T) { f(t, false) })
	t.Run("message", func(t *testing.T) { f(t, true) })
}

// startServerReading is startServer whose sessions read Conn.Message if
// direct is set.
func startServerReading(t *testing.T, cfg Config, direct bool) *testServer {
	t.Helper()
	if cfg.GreetPause == 0 {
		cfg.GreetPause = -1
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewListener(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	be := &testBackend{direct: direct}
	s := smtp.NewServer(be)
	s.Domain = "mx.test"
	s.MaxLineLength = 0
	s.MaxMessageBytes = 8 << 20
	s.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return &testServer{addr: ln.Addr().String(), be: be, l: l}
}

// client is a raw SMTP client that writes exact bytes.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// A hung test fails instead of blocking the whole run.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// reply reads one complete (possibly multi-line) reply.
func (c *client) reply() (string, error) {
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if len(line) < 4 || line[3] != '-' {
			return b.String(), nil
		}
	}
}

// expect reads a reply and fails unless it starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %q): got %q, %v", prefix, r, err)
	}
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("reply = %q, want prefix %q", r, prefix)
	}
	return r
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// cmd sends one command line and expects a reply prefix.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// expectClosed reads until EOF (or a reset) and fails on more replies.
func (c *client) expectClosed() {
	c.t.Helper()
	r, err := c.reply()
	if err == nil {
		c.t.Fatalf("got reply %q, want connection closed", r)
	}
	if r != "" {
		c.t.Fatalf("got partial %q, want connection closed", r)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: %v", err)
	}
}

// startTx greets and opens a transaction up to the 354.
func (c *client) startTx(from string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	c.cmd("RCPT TO:<rcpt@mx.test>", "250 ")
	c.cmd("DATA", "354 ")
}

func greeted(t *testing.T, addr string) *client {
	t.Helper()
	c := dial(t, addr)
	c.expect("220 ")
	c.cmd("EHLO client.test", "250")
	return c
}

// tlsClient upgrades c after a 220 to STARTTLS.
func (c *client) tlsUpgrade() *tls.Conn {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("tls handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
	return tc
}
