package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/linger"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/pop3d/internal/metrics"
	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// state is a POP3 session state (RFC 1939 §3).
type state int

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

func (s state) String() string {
	switch s {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	case stateUpdate:
		return "UPDATE"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// bufSize is the connection's read buffer: larger than a command line.
const bufSize = 4096

// conn is one POP3 connection. Its goroutine (serve) owns every field
// except raw, which the Server may close or give a deadline.
type conn struct {
	s   *Server
	raw net.Conn // the TCP connection; immutable
	nc  net.Conn // raw, or the TLS connection over it
	r   *bufio.Reader
	w   *bufio.Writer
	log *slog.Logger
	ip  netip.Addr

	mode   Mode
	tls    bool
	state  state
	user   string // from USER, until PASS
	acct   *mailbox.Account
	drop   *maildrop
	errors int // bad commands so far

	retrieved, deleted int
	sent               int64

	ahead readAhead // messages fetched before their RETR
}

func newConn(s *Server, nc net.Conn, ip netip.Addr, mode Mode) *conn {
	id := s.nextID.Add(1)
	return &conn{s: s, raw: nc, nc: nc, ip: ip, mode: mode,
		log: s.log.With("conn", id, "remote", nc.RemoteAddr().String())}
}

// serve runs the connection to its end and closes it.
func (c *conn) serve() {
	defer c.ahead.wg.Wait()
	defer c.raw.Close()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in connection", "panic", r, "stack", string(debug.Stack()))
			c.s.m.Errors.WithLabelValues(metrics.ErrorPanic).Inc()
		}
	}()
	c.log.Debug("connection open", "mode", c.mode)
	if c.mode == ImplicitTLS {
		if err := c.handshake(); err != nil {
			c.log.Warn("tls handshake", "err", err)
			return
		}
	} else {
		c.setIO(c.nc)
	}
	c.loop()
	c.lingerClose()
	c.log.Info("session end", "state", c.state, "tls", c.tls,
		"retrieved", c.retrieved, "deleted", c.deleted, "bytes", c.sent)
}

// lingerClose ends a TCP connection gently: over TLS it sends close_notify,
// then FIN, and reads (and drops) what the client still sends for a
// moment, so that a reply written just before is not lost to a reset
// (closing a socket with unread input sends RST, which can destroy data
// the client has not read yet). Before 2026-12-02 TLS sessions were
// closed at once.
func (c *conn) lingerClose() {
	tc, ok := c.raw.(*net.TCPConn)
	if !ok {
		return
	}
	if t, ok := c.nc.(*tls.Conn); ok {
		// A client that does not read must not hold the session here.
		t.SetWriteDeadline(time.Now().Add(time.Second))
		if t.CloseWrite() != nil {
			return
		}
	}
	if tc.CloseWrite() != nil {
		return
	}
	linger.Drain(tc)
}

func (c *conn) setIO(nc net.Conn) {
	c.nc = nc
	c.r = bufio.NewReaderSize(nc, bufSize)
	c.w = bufio.NewWriterSize(nc, 32<<10)
}

// handshake runs the server side of TLS on c.raw (implicit TLS or STLS).
func (c *conn) handshake() error {
	tc := tls.Server(c.raw, c.s.cfg.TLS)
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.TLSTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.tls = true
	c.setIO(tc)
	return nil
}

// loop reads and runs commands until QUIT, an error that closes the
// connection, or the peer leaving.
func (c *conn) loop() {
	if !c.writeLine("+OK twinmx POP3 server ready") {
		return
	}
	for {
		line, err := c.readCommand(c.s.cfg.IdleTimeout)
		if err != nil {
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			if reply := c.readFailure(err); reply != nil {
				c.writeLine(reply.line())
			}
			// Replies to pipelined commands wait in c.w until the input
			// runs dry; an input that ends in an unfinished line (EOF)
			// must not drop them.
			c.w.Flush()
			return
		}
		cmd, err := pop3.Parse(line)
		verb := cmd.Verb
		if err != nil {
			verb = ""
			var se *pop3.SyntaxError
			if errors.As(err, &se) {
				verb = se.Verb
			}
		}
		c.s.m.Commands.WithLabelValues(metrics.Command(verb)).Inc()
		if err == nil {
			c.traceCommand(cmd)
			c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
			err = c.run(cmd)
		}
		if err == nil {
			if c.state == stateUpdate {
				c.w.Flush()
				return
			}
			continue
		}
		if errors.Is(err, errIO) {
			c.s.m.Errors.WithLabelValues(metrics.ErrorIO).Inc()
			c.log.Info("connection broken mid-response", "err", err)
			return
		}
		reply, protocol := replyFor(err, c.log, c.s.m)
		if protocol {
			c.s.m.Errors.WithLabelValues(metrics.ErrorProtocol).Inc()
			c.log.Warn("bad command", "state", c.state, "err", err)
			if c.errors++; c.errors >= c.s.cfg.MaxErrors {
				reply = errTooManyErrors
			}
		}
		if !c.writeLine(reply.line()) || reply.Close {
			c.w.Flush()
			return
		}
	}
}

// readCommand waits at most timeout for one command line, flushing
// pending replies first unless the client pipelined more commands.
func (c *conn) readCommand(timeout time.Duration) ([]byte, error) {
	if c.r.Buffered() == 0 {
		if err := c.w.Flush(); err != nil {
			return nil, fmt.Errorf("%w: %v", errIO, err)
		}
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	if c.s.isClosing() {
		return nil, errShutdown
	}
	return pop3.ReadLine(c.r)
}

// readFailure returns the reply to a failed command read, if one can be sent.
func (c *conn) readFailure(err error) *Error {
	switch {
	case errors.Is(err, errShutdown):
		return errShutdown
	case errors.Is(err, pop3.ErrTooLong):
		c.s.m.Errors.WithLabelValues(metrics.ErrorProtocol).Inc()
		c.log.Warn("command line too long", "state", c.state)
		return errTooLong
	case isTimeout(err):
		if c.s.isClosing() {
			return errShutdown
		}
		c.s.m.Errors.WithLabelValues(metrics.ErrorTimeout).Inc()
		c.log.Info("idle timeout", "state", c.state)
		return errIdle
	case errors.Is(err, io.EOF):
		return nil
	}
	c.log.Debug("read command", "err", err)
	return nil
}

func (c *conn) traceCommand(cmd pop3.Command) {
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	switch cmd.Verb {
	case pop3.PASS, pop3.AUTH: // never log credentials
		c.log.Debug("command", "verb", cmd.Verb, "mechanism", cmd.Arg)
	default:
		c.log.Debug("command", "verb", cmd.Verb, "msg", cmd.Msg, "lines", cmd.Lines, "arg", cmd.Arg)
	}
}

// run runs one command under recover: a panic is logged with its stack,
// counted, and ends this connection only.
func (c *conn) run(cmd pop3.Command) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in command", "verb", cmd.Verb, "panic", r, "stack", string(debug.Stack()))
			c.s.m.Errors.WithLabelValues(metrics.ErrorPanic).Inc()
			err = errInternal
		}
	}()
	if !allowed(c.state, cmd.Verb) {
		return errBadState
	}
	return c.dispatch(cmd)
}

// allowed reports whether verb may be used in state (RFC 1939 §4-§6,
// RFC 2449 §5: CAPA in both states; RFC 2595 §4: STLS before login).
func allowed(st state, verb pop3.Verb) bool {
	switch verb {
	case pop3.CAPA, pop3.QUIT:
		return st == stateAuthorization || st == stateTransaction
	case pop3.USER, pop3.PASS, pop3.AUTH, pop3.STLS:
		return st == stateAuthorization
	case pop3.STAT, pop3.LIST, pop3.RETR, pop3.DELE, pop3.NOOP, pop3.RSET, pop3.TOP, pop3.UIDL:
		return st == stateTransaction
	}
	return false
}

func (c *conn) dispatch(cmd pop3.Command) error {
	switch cmd.Verb {
	case pop3.CAPA:
		return c.capa()
	case pop3.QUIT:
		return c.quit()
	case pop3.STLS:
		return c.stls()
	case pop3.USER:
		return c.userCmd(cmd.Arg)
	case pop3.PASS:
		return c.pass(cmd.Arg)
	case pop3.AUTH:
		return c.auth(cmd)
	case pop3.STAT:
		return c.stat()
	case pop3.LIST:
		return c.list(cmd.Msg)
	case pop3.UIDL:
		return c.uidl(cmd.Msg)
	case pop3.RETR:
		return c.retr(cmd.Msg, -1)
	case pop3.TOP:
		return c.retr(cmd.Msg, cmd.Lines)
	case pop3.DELE:
		return c.dele(cmd.Msg)
	case pop3.RSET:
		return c.rset()
	case pop3.NOOP:
		return c.ok("")
	}
	return pop3.ErrUnknown
}

// writeLine writes one reply line; false if the connection broke.
func (c *conn) writeLine(s string) bool {
	c.w.WriteString(s)
	_, err := c.w.WriteString("\r\n")
	return err == nil
}

// ok writes "+OK text".
func (c *conn) ok(text string) error {
	line := "+OK"
	if text != "" {
		line += " " + text
	}
	if !c.writeLine(line) {
		return errIO
	}
	return nil
}

// storeCtx returns the context of one store call.
func (c *conn) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.s.ctx, c.s.cfg.DBTimeout)
}

// plaintextOK reports whether this connection may send a password
// (SPEC §8: never in clear text except from loopback, unless configured).
func (c *conn) plaintextOK() bool {
	return c.tls || c.s.cfg.AllowPlaintext || c.ip.IsLoopback()
}

// capa answers CAPA (RFC 2449 §5).
func (c *conn) capa() error {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"}
	if c.state == stateAuthorization {
		if c.plaintextOK() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
		if c.s.cfg.TLS != nil && !c.tls {
			caps = append(caps, "STLS")
		}
	}
	caps = append(caps, "IMPLEMENTATION twinmx")
	c.ok("capability list follows")
	for _, s := range caps {
		c.writeLine(s)
	}
	if !c.writeLine(".") {
		return errIO
	}
	return nil
}

// stls upgrades the connection (RFC 2595 §4). Bytes the client sent after
// STLS, before the handshake, are discarded (command injection defence).
func (c *conn) stls() error {
	switch {
	case c.s.cfg.TLS == nil:
		return errNoTLS
	case c.tls:
		return errTLSActive
	}
	if err := c.ok("begin TLS negotiation"); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("%w: %v", errIO, err)
	}
	if n := c.r.Buffered(); n > 0 {
		c.log.Warn("discarded commands pipelined after STLS", "bytes", n)
		c.r.Discard(n)
	}
	c.nc.SetReadDeadline(time.Time{})
	if err := c.handshake(); err != nil {
		return fmt.Errorf("%w: tls handshake: %v", errIO, err)
	}
	c.user = "" // RFC 2595 §4: forget what came before TLS
	return nil
}

// quit ends the session; in TRANSACTION it enters UPDATE and removes the
// marked mail (RFC 1939 §6).
func (c *conn) quit() error {
	if c.state == stateTransaction {
		c.state = stateUpdate
		n, err := c.drop.commit(c)
		if err != nil {
			c.log.Error("remove deleted messages", "err", err, "count", n)
			c.s.m.Errors.WithLabelValues(metrics.ErrorDB).Inc()
			return errUpdate
		}
		c.deleted = n
		return c.ok(fmt.Sprintf("bye, %d messages deleted", n))
	}
	c.state = stateUpdate // the loop ends after the reply
	return c.ok("bye")
}
