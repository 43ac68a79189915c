package daemon

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/connlimit"
	"github.com/twinmx/twinmx/pkg/wire/linger"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

// dispatcher accepts on one listener and hands each connection to one of
// two go-imap servers (see Run): trusted connections (that may log in
// without TLS) or strict ones. It counts bytes below TLS, so go-imap still
// sees a *tls.Conn where there is one.
type dispatcher struct {
	ln      net.Listener
	m       *metrics.Metrics
	conns   *registry
	limit   *connlimit.Limiter // shared by both listeners
	log     *slog.Logger
	tls     *tls.Config // non-nil: implicit TLS
	trust   func(net.Conn) bool
	strict  *chanListener
	trusted *chanListener
	preAuth time.Duration       // Config.PreAuthTimeout
	onConn  func(*countingConn) // Config.onConn
}

func newDispatcher(ln net.Listener, m *metrics.Metrics, conns *registry, limit *connlimit.Limiter, tc *tls.Config, log *slog.Logger, trust func(net.Conn) bool) *dispatcher {
	return &dispatcher{ln: ln, m: m, conns: conns, limit: limit, log: log, tls: tc, trust: trust,
		strict: newChanListener(ln.Addr()), trusted: newChanListener(ln.Addr())}
}

// run accepts until the listener is closed, then closes both halves.
func (d *dispatcher) run() {
	defer d.strict.Close()
	defer d.trusted.Close()
	var backoff time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Any other failure (EMFILE or ENFILE when the process is
			// out of file descriptors, ENOBUFS) passes: returning here
			// closed the go-imap listeners, and Run took that for a
			// shutdown and ended imapd with no error. Wait a little, as
			// net/http and go-imap do, so the loop does not spin while
			// the condition lasts.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			d.log.Warn("accept failed, retrying", "listen", d.ln.Addr().String(), "err", err, "wait", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		release, why := d.limit.Admit(connlimit.IP(c.RemoteAddr()))
		if why != connlimit.Admitted {
			d.refuse(c, why)
			continue
		}
		cc := &countingConn{Conn: c, m: d.m, reg: d.conns, release: release, preAuth: d.preAuth}
		d.conns.add(cc)
		if d.onConn != nil {
			d.onConn(cc)
		}
		var nc net.Conn = cc
		if d.tls != nil {
			// go-imap's greeting starts the handshake before go-imap
			// sets any read deadline, so a client that never sends its
			// ClientHello (or stops mid-handshake) held its connection
			// slot for ever. go-imap's own deadlines replace this one
			// from the first command on; SetReadDeadline caps it at
			// the pre-auth timeout.
			cc.SetReadDeadline(time.Now().Add(handshakeTimeout))
			nc = tls.Server(nc, d.tls)
		}
		target := d.strict
		if d.trust(c) {
			target = d.trusted
		}
		if !target.put(nc) {
			nc.Close()
			return
		}
	}
}

// handshakeTimeout bounds an implicit-TLS client's handshake: go-imap's
// bound on a command before login (cmdReadTimeout).
const handshakeTimeout = 30 * time.Second

// refuse closes a connection over a limit, with a BYE where the client
// can read one (not on the implicit-TLS port: no handshake is spent on
// it). The socket is fresh, so the line fits its send buffer; the
// deadline only keeps a broken socket from blocking Accept.
func (d *dispatcher) refuse(c net.Conn, why connlimit.Refusal) {
	text := "Too many connections, try again later"
	if why == connlimit.TooManyFromIP {
		text = "Too many connections from your address, try again later"
	}
	d.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", text)
	d.m.Errors.WithLabelValues("conn_limit").Inc()
	if d.tls == nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "* BYE [UNAVAILABLE] "+text+"\r\n")
	}
	c.Close()
}

// chanListener is a net.Listener fed by a dispatcher.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(a net.Addr) *chanListener {
	return &chanListener{addr: a, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) put(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// registry tracks open connections so shutdown can close them.
type registry struct {
	mu    sync.Mutex
	conns map[*countingConn]struct{}
	// held lends the connections their hold buffers (heldMax bytes):
	// a FETCH of many mails gets one that earlier FETCHes used, not a new
	// one grown by doubling.
	held sync.Pool
}

func (r *registry) add(c *countingConn) {
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) remove(c *countingConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *registry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Conn.Close()
	}
}

// countingConn counts the bytes of a connection in the metrics and leaves
// the registry when closed. It can also hold writes (see Hold).
type countingConn struct {
	net.Conn
	m       *metrics.Metrics
	reg     *registry
	release func() // the connection limit's slot
	// preAuth > 0 caps each read deadline at that much from now until the
	// session has logged in (Config.PreAuthTimeout).
	preAuth  time.Duration
	loggedIn atomic.Bool
	closed   atomic.Bool

	mu   sync.Mutex // guards the fields below and orders writes
	hold int        // > 0: writes are kept in buf
	buf  []byte
	// readDeadline is the last read deadline set (tests).
	readDeadline time.Time
}

// LoggedIn lifts the pre-auth read deadline cap (the session calls it on
// login; below TLS, like Hold).
func (c *countingConn) LoggedIn() { c.loggedIn.Store(true) }

// SetReadDeadline is go-imap's way to time out a silent client: 30 s
// before login (cmdReadTimeout), 35 min after, both constants there.
// Before login it is shortened to preAuth if that is set.
func (c *countingConn) SetReadDeadline(t time.Time) error {
	if c.preAuth > 0 && !c.loggedIn.Load() {
		if lim := time.Now().Add(c.preAuth); t.IsZero() || t.After(lim) {
			t = lim
		}
	}
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// lastReadDeadline returns the read deadline set last (tests).
func (c *countingConn) lastReadDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readDeadline
}

// heldMax is how much a held connection keeps before writing anyway.
const heldMax = 256 << 10

// Close ends the connection with FIN, not a reset (package linger); TLS
// has sent its close_notify through Write first. It may come from another
// goroutine than the session's (a BYE, the server's shutdown) while the
// session waits in Read; that read returns when the client sends or
// closes, or when the linger ends, and whatever it or a later read gets is
// dropped: no command read after Close runs (Read).
func (c *countingConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	c.reg.remove(c)
	c.release()
	return linger.Close(c.Conn)
}

func (c *countingConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.closed.Load() {
		return 0, net.ErrClosed // read while Close lingers: dropped (see Close)
	}
	c.m.Bytes.WithLabelValues("in").Add(float64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold == 0 {
		return c.writeLocked(p)
	}
	if c.buf == nil {
		if b, ok := c.reg.held.Get().(*[]byte); ok {
			c.buf = (*b)[:0]
		} else {
			c.buf = make([]byte, 0, heldMax)
		}
	}
	if len(c.buf)+len(p) > cap(c.buf) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= cap(c.buf) {
			return c.writeLocked(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *countingConn) writeLocked(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.Bytes.WithLabelValues("out").Add(float64(n))
	return n, err
}

func (c *countingConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.writeLocked(c.buf)
	c.buf = c.buf[:0]
	return err
}

// Hold keeps what is written in a buffer until release (or until heldMax
// bytes wait): go-imap flushes after every response, so a FETCH of many
// mails would cost one write(2) per mail. release writes what waits; its
// error is the connection's (the next write sees it too).
func (c *countingConn) Hold() (release func() error) {
	c.mu.Lock()
	c.hold++
	c.mu.Unlock()
	return func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.hold--
		if c.hold > 0 {
			return nil
		}
		err := c.flushLocked()
		if c.buf != nil {
			b := c.buf
			c.reg.held.Put(&b) // an idle session keeps no buffer
			c.buf = nil
		}
		return err
	}
}
