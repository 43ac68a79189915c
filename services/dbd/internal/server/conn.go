package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// errWrite marks a failed write of an answer: the connection is gone, so
// there is nobody to answer and nothing for the operator to do.
var errWrite = errors.New("server: write answer")

// errUnknownClient refuses a handshake from a key not in the clients file.
var errUnknownClient = errors.New("client key not listed")

// writeTimeout bounds one frame write: a client that stops reading is cut
// off instead of holding answers (and the goroutines writing them) forever.
const writeTimeout = time.Minute

// conn is one authenticated connection. Its reader goroutine (run) owns
// pending and discard; request goroutines only write answers.
type conn struct {
	s    *Server
	id   uint64
	wc   *wire.Conn
	peer wire.PublicKey
	role auth.Role
	log  *slog.Logger

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	inflight chan struct{} // semaphore for one-shot requests
	armed    chan struct{} // semaphore for waiting arm requests
	streams  chan struct{} // semaphore for streams
	// nstreams counts open streams and waiting arm requests: work that
	// may rightly go on long after the client's last frame, so the idle
	// clock stops while any is open.
	nstreams atomic.Int32
	// streamEnd is when a stream or arm last ended (UnixNano), stored
	// before nstreams drops: the idle clock runs from it (see readFrame).
	streamEnd atomic.Int64
	stopped   atomic.Bool // shutdown: refuse new requests; set under mu

	mu      sync.Mutex
	running map[uint32]running // requests in flight by id
	wg      sync.WaitGroup     // request goroutines
}

func (s *Server) serveConn(nc net.Conn, id uint64) {
	defer nc.Close()
	log := s.log.With("conn", id, "remote", nc.RemoteAddr().String())
	if !s.limit.allow(nc.RemoteAddr()) {
		s.m.HandshakeFailures.WithLabelValues("rate").Inc()
		log.Warn("handshake refused: rate limit")
		return
	}
	if s.handshakeHook != nil {
		s.handshakeHook(nc.RemoteAddr())
	}
	wc, err := wire.ServerHandshake(s.ctx, nc, &wire.ServerConfig{
		Static:   s.cfg.Static,
		Previous: s.cfg.Previous,
		Authorize: func(k wire.PublicKey) error {
			cl, ok := s.lookup(k)
			if !ok {
				return errUnknownClient
			}
			if cl.Expired(s.cfg.Now()) {
				return auth.ErrExpired
			}
			return nil
		},
		Replay:           s.replay,
		Now:              s.cfg.Now,
		Window:           s.cfg.Window,
		HandshakeTimeout: s.cfg.HandshakeTimeout,
	})
	if err != nil {
		var he *wire.HandshakeError
		reason := "other"
		if errors.As(err, &he) {
			reason = string(he.Reason)
		}
		expired := errors.Is(err, auth.ErrExpired)
		if expired {
			reason = "expired-key"
		}
		s.m.HandshakeFailures.WithLabelValues(reason).Inc()
		switch {
		case expired:
			cl, _ := s.lookup(he.Peer)
			log.Warn("handshake refused: client key past its not-after in the clients file",
				"client", he.Peer.String(), "key_file", cl.Name, "not_after", cl.NotAfter)
		case he != nil && he.Reason == wire.ReasonClockSkew:
			log.Warn("handshake refused: clock skew; check NTP on both hosts", "skew", he.Skew, "client", he.Peer.String())
		case he != nil && he.Reason == wire.ReasonUnknownKey:
			log.Warn("handshake refused: client key not in the clients file", "client", he.Peer.String())
		default:
			log.Debug("handshake failed", "err", err)
		}
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		s: s, id: id, wc: wc, peer: wc.PeerStatic(),
		ctx:      ctx,
		cancel:   cancel,
		inflight: make(chan struct{}, s.cfg.MaxInflight),
		armed:    make(chan struct{}, s.cfg.MaxArmed),
		streams:  make(chan struct{}, s.cfg.MaxStreams),
		running:  map[uint32]running{},
	}
	// The role is read and the connection registered under s.mu, which
	// SetClients and the expiry sweep also hold while they close
	// connections: a reload or an expiry during the handshake either sees
	// this connection or is seen here.
	s.mu.Lock()
	cl, ok := s.lookup(c.peer)
	if s.mu.shutting || !ok || cl.Expired(s.cfg.Now()) {
		s.mu.Unlock()
		wc.Close()
		cancel()
		return
	}
	c.role = cl.Role
	// Every line of the session names its key, so an operator can tell
	// which program a refusal or failure came from: several programs may
	// hold one role (pop3d and imapd are both mailbox).
	c.log = log.With("role", string(c.role), "client", c.peer.String(), "key_file", cl.Name)
	s.mu.conns[c] = struct{}{}
	s.mu.Unlock()
	s.m.Connections.Inc()
	s.m.ConnectionsTotal.Inc()
	c.log.Debug("connection authenticated")
	defer func() {
		c.cancel()
		c.wg.Wait()
		wc.Close()
		s.mu.Lock()
		delete(s.mu.conns, c)
		s.mu.Unlock()
		s.m.Connections.Dec()
	}()
	c.run()
}

// shutdown makes the connection refuse new requests (shutdown phase 1) and
// closes it as soon as no request is in flight.
func (c *conn) shutdown() {
	// stopped is set under mu, where dispatch checks it again as it
	// registers a request: every request is either refused or in running
	// here, so no stream started as shutdown begins is left running.
	c.mu.Lock()
	c.stopped.Store(true)
	for _, r := range c.running {
		if r.stream { // streams never finish by themselves
			r.cancel()
		}
	}
	c.mu.Unlock()
	c.closeIfIdle()
}

// closeIfIdle closes a stopped connection that has no request in flight.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := len(c.running) == 0
	c.mu.Unlock()
	if idle && c.stopped.Load() {
		c.wc.Close()
	}
}

// running is a request in flight.
type running struct {
	cancel context.CancelFunc
	stream bool
}

// maxPending bounds the requests whose frames are still arriving on one
// connection. MaxConnBuffered bounds their bytes, but a first frame
// without data (or one whose request is already refused as too large)
// holds none, and each took an entry in the map all the same: a client
// could grow it without bound. A client sends each request's frames one
// after another (the Go client writes a request whole), so a handful are
// ever pending at once.
const maxPending = 4096

// assembly is a request whose frames are still arriving.
type assembly struct {
	buf []byte
	// reserved is the size buf was allocated with for a size the request
	// declared (wire.RequestSize), 0 if none.
	reserved int
	discard  bool // over MaxMessage: answer too-large at the last frame
}

// held is what a counts against MaxConnBuffered: the bytes received, or
// the size allocated up front if more. Counting only the bytes received
// let a client make dbd allocate MaxMessage for every request id it
// opened with a few bytes.
func (a *assembly) held() int { return max(len(a.buf), a.reserved) }

// run reads frames until the connection ends. It is the only goroutine
// reading from wc.
func (c *conn) run() {
	pending := map[uint32]*assembly{}
	buffered := 0
	// Frames are decrypted into scratch and copied into their request's
	// buffer: no allocation per frame.
	scratch := make([]byte, wire.MaxFrameData+wire.FrameHeaderSize)
	for {
		f, err := c.readFrame(scratch)
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.log.Debug("connection closed by client")
			} else if c.ctx.Err() == nil {
				c.log.Info("connection ended", "err", err)
			}
			return
		}
		c.s.m.BytesIn.Add(float64(len(f.Data)))
		if f.Flags&wire.FlagCancel != 0 {
			if a := pending[f.ReqID]; a != nil {
				buffered -= a.held()
				delete(pending, f.ReqID)
			}
			c.mu.Lock()
			if r, ok := c.running[f.ReqID]; ok {
				r.cancel()
			}
			c.mu.Unlock()
			continue
		}
		a := pending[f.ReqID]
		if a == nil {
			c.mu.Lock()
			_, busy := c.running[f.ReqID]
			c.mu.Unlock()
			if busy {
				c.log.Warn("protocol violation: request id reused while in flight", "id", f.ReqID)
				return
			}
			if f.Flags&wire.FlagMore != 0 && len(pending) >= maxPending {
				c.log.Warn("protocol violation: too many requests begun and not ended", "pending", len(pending))
				return
			}
			a = &assembly{}
			pending[f.ReqID] = a
			if n, ok := wire.RequestSize(f.Data); ok && f.Flags&wire.FlagMore != 0 {
				// A large find-or-insert declares its size up front:
				// refuse it at once if too large, else allocate once.
				if n > c.s.cfg.MaxMessage || buffered+n > c.s.cfg.MaxConnBuffered {
					a.discard = true
				} else {
					a.buf, a.reserved = make([]byte, 0, n), n
					buffered += n
				}
			}
		}
		if !a.discard {
			n := len(a.buf) + len(f.Data)
			grow := max(n, a.reserved) - a.held()
			if n > c.s.cfg.MaxMessage || buffered+grow > c.s.cfg.MaxConnBuffered {
				buffered -= a.held()
				a.buf, a.reserved, a.discard = nil, 0, true
			} else {
				a.buf = append(a.buf, f.Data...)
				buffered += grow
			}
		}
		if f.Flags&wire.FlagMore != 0 {
			continue
		}
		delete(pending, f.ReqID)
		buffered -= a.held()
		if a.discard {
			c.s.m.Requests.WithLabelValues("unknown", wire.CodeTooLarge.String()).Inc()
			c.sendError(f.ReqID, wire.CodeTooLarge, "request larger than the server's limit")
			continue
		}
		if !c.dispatch(f.ReqID, a.buf) {
			return
		}
	}
}

// readFrame reads the next frame into scratch. It returns the read
// deadline's error once the client has sent nothing for IdleTimeout while
// it had no stream or waiting arm open: the idle clock runs from the later
// of the last frame and the end of the last stream or arm. Setting no deadline while a
// stream was open left a connection whose last frame came then (often
// the CANCEL of its last watch) open for ever.
func (c *conn) readFrame(scratch []byte) (wire.Frame, error) {
	idle := c.s.cfg.IdleTimeout
	deadline := time.Now().Add(idle)
	for {
		// SetReadDeadline fails only once the connection is dead, as
		// after a read that timed out mid-frame: never retry that one.
		if err := c.wc.SetReadDeadline(deadline); err != nil {
			return wire.Frame{}, err
		}
		f, err := c.wc.ReadFrameTo(scratch)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return f, err
		}
		// A deadline that passed before a frame began leaves the
		// connection usable (wire.Conn.SetReadDeadline).
		now := time.Now()
		if c.nstreams.Load() > 0 {
			deadline = now.Add(idle)
			continue
		}
		// Read after nstreams: a stream stores its end before it drops
		// nstreams, so this is the end of the last one.
		ended := time.Unix(0, c.streamEnd.Load())
		if now.Sub(ended) >= idle {
			return f, err
		}
		deadline = ended.Add(idle)
	}
}

// dispatch decodes and authorises one request and starts its goroutine. It
// returns false if the connection must end.
func (c *conn) dispatch(id uint32, msg []byte) bool {
	if c.stopped.Load() {
		c.sendError(id, wire.CodeUnavailable, "dbd is shutting down")
		return true
	}
	req, err := wire.DecodeRequest(msg)
	if err != nil {
		c.s.m.Requests.WithLabelValues("unknown", wire.CodeBadRequest.String()).Inc()
		c.log.Warn("malformed request", "err", err)
		c.sendError(id, wire.CodeBadRequest, err.Error())
		return true
	}
	if err := c.role.Check(req); err != nil {
		c.s.m.Requests.WithLabelValues(req.Op.String(), wire.CodeForbidden.String()).Inc()
		attrs := []any{"op", req.Op.String()}
		if req.Table != 0 { // batches, merges and streams name none
			attrs = append(attrs, "table", req.Table.String())
		}
		c.log.Warn("request refused by role", append(attrs, "err", err)...)
		c.sendError(id, wire.CodeForbidden, err.Error())
		return true
	}
	stream, arm := isStream(req.Op), req.Op == wire.OpArm
	var release func() // gives the slot back
	switch {
	case arm:
		// An arm request may wait as long as a decision window: it has a
		// bound of its own, so waiting ones never hold up the one-shot
		// requests behind them. Beyond it the client acknowledges itself.
		select {
		case c.armed <- struct{}{}:
		default:
			c.s.m.Requests.WithLabelValues(req.Op.String(), wire.CodeBusy.String()).Inc()
			c.sendError(id, wire.CodeBusy, "too many arm requests waiting on this connection")
			return true
		}
		c.nstreams.Add(1)
		release = func() {
			c.streamEnd.Store(time.Now().UnixNano())
			c.nstreams.Add(-1)
			<-c.armed
		}
	case stream:
		select {
		case c.streams <- struct{}{}:
		default:
			c.s.m.Requests.WithLabelValues(req.Op.String(), wire.CodeBusy.String()).Inc()
			c.sendError(id, wire.CodeBusy, "too many open streams on this connection")
			return true
		}
		c.nstreams.Add(1)
		release = func() {
			c.streamEnd.Store(time.Now().UnixNano())
			c.nstreams.Add(-1)
			<-c.streams
		}
	default:
		select {
		case c.inflight <- struct{}{}:
		case <-c.ctx.Done():
			return false
		}
		release = func() { <-c.inflight }
	}
	ctx, cancel := context.WithCancel(c.ctx)
	c.mu.Lock()
	if c.stopped.Load() {
		// shutdown began after the check above, and did not see this
		// request: it would neither stop this stream nor close the
		// connection for it.
		c.mu.Unlock()
		cancel()
		release()
		c.sendError(id, wire.CodeUnavailable, "dbd is shutting down")
		return true
	}
	c.running[id] = running{cancel: cancel, stream: stream}
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer func() {
			cancel()
			c.mu.Lock()
			delete(c.running, id)
			c.mu.Unlock()
			c.closeIfIdle()
			release()
			c.wg.Done()
		}()
		defer func() {
			if p := recover(); p != nil {
				c.s.m.Panics.Inc()
				c.log.Error("panic serving request", "op", req.Op.String(), "panic", p, "stack", string(debug.Stack()))
				c.sendError(id, wire.CodeInternal, "internal error")
			}
		}()
		c.serve(ctx, id, req)
	}()
	return true
}

func isStream(op wire.Op) bool {
	switch op {
	case wire.OpWatch, wire.OpChanges, wire.OpDump, wire.OpScan, wire.OpList, wire.OpMail, wire.OpMails:
		return true
	}
	return false
}

// writeFrame writes one frame with a deadline. It takes no lock of its
// own: wire.Conn serialises writers and lets concurrent ones share a
// write(2), which an outer lock would defeat.
func (c *conn) writeFrame(f wire.Frame) error {
	c.wc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.wc.WriteFrame(f); err != nil {
		c.cancel()
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	c.s.m.BytesOut.Add(float64(len(f.Data)))
	return nil
}

func (c *conn) sendError(id uint32, code wire.Code, msg string) {
	c.sendMessage(id, wire.AppendError(nil, code, msg))
}

// sendMessage sends a complete message, split into frames.
func (c *conn) sendMessage(id uint32, msg []byte) error {
	w := &message{c: c, id: id, buf: msg}
	return w.finish()
}

// message writes one answer message of unknown length as frames: every
// full frame goes out with FlagMore, finish sends the rest without it.
// Its buffer comes from the server's pool and goes back after finish
// (writeFrame has copied the bytes by then).
type message struct {
	c      *conn
	id     uint32
	buf    []byte
	err    error
	sent   bool    // a frame of it went out (see cut)
	pooled *[]byte // the pool's buffer, nil if buf is the caller's
}

// maxPooledMessage bounds the buffers the pool keeps.
const maxPooledMessage = 256 << 10

func (c *conn) newMessage(id uint32) *message {
	m := &message{c: c, id: id}
	m.pooled, _ = c.s.msgBufs.Get().(*[]byte)
	if m.pooled == nil {
		m.pooled = new([]byte)
	}
	m.buf = (*m.pooled)[:0]
	return m
}

func (m *message) Write(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	total := len(p)
	max := m.c.wc.MaxFrameData()
	for len(p) > 0 {
		n := min(len(p), max-len(m.buf))
		m.buf = append(m.buf, p[:n]...)
		p = p[n:]
		if len(m.buf) == max && len(p) > 0 {
			if m.err = m.c.writeFrame(wire.Frame{Flags: wire.FlagMore, ReqID: m.id, Data: m.buf}); m.err != nil {
				return 0, m.err
			}
			m.sent = true
			m.buf = m.buf[:0]
		}
	}
	return total, nil
}

// cut returns err, marked errCutShort if frames of m went out already:
// the client has part of the answer, and no error answer can follow it.
func (m *message) cut(err error) error {
	if err != nil && m.sent {
		return fmt.Errorf("%w: %w", errCutShort, err)
	}
	return err
}

func (m *message) finish() error {
	if m.err != nil {
		return m.err
	}
	if m.pooled != nil {
		// The buffer as it grew (appends here and in the handlers), to
		// go back to the pool.
		*m.pooled = m.buf[:0]
	}
	max := m.c.wc.MaxFrameData()
	for len(m.buf) > max {
		if m.err = m.c.writeFrame(wire.Frame{Flags: wire.FlagMore, ReqID: m.id, Data: m.buf[:max]}); m.err != nil {
			return m.err
		}
		m.buf = m.buf[max:]
	}
	m.err = m.c.writeFrame(wire.Frame{ReqID: m.id, Data: m.buf})
	if m.pooled != nil {
		if cap(*m.pooled) <= maxPooledMessage {
			m.c.s.msgBufs.Put(m.pooled)
		}
		m.pooled, m.buf = nil, nil
	}
	return m.err
}
