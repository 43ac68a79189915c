package guard

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/linger"
)

// ErrClosed is returned by Read and Write once the guard has closed the
// connection. It wraps net.ErrClosed, so go-smtp ends the session quietly.
var ErrClosed = fmt.Errorf("guard: connection closed: %w", net.ErrClosed)

// ErrDataAborted is returned by Read when the DATA stream breaks (read
// error, timeout, EOF before the end marker). The session's Data sees it;
// the connection is closed and every later Read returns ErrClosed, so the
// rest of a body is never parsed as commands (go-smtp issue #196).
var ErrDataAborted = errors.New("guard: DATA aborted")

// readBufSize is the socket read size; it bounds the memory a connection
// holds besides go-smtp's own buffers.
const readBufSize = 32 << 10

// replyBufMax bounds a reply line held while waiting for its LF, and an
// EHLO reply held for rewriting.
const replyBufMax = 16 << 10

// mode is what the guard expects from the client next.
type mode int

const (
	modeCommand mode = iota // command lines, one per Read
	modeData                // DATA stream after a 354 reply
)

func (m mode) String() string {
	switch m {
	case modeCommand:
		return "command"
	case modeData:
		return "data"
	}
	return "invalid"
}

// via is who reads a DATA stream: go-smtp (Read) or the session
// (Message). Message must come first; go-smtp may follow it (to drain).
type via uint8

const (
	viaNone via = iota
	viaSMTP
	viaMessage
)

// connParams carries what a Listener hands to each Conn.
type connParams struct {
	cfg     *Config // defaults applied; shared, read-only
	id      uint64
	ip      netip.Addr
	pass    *passCache
	release func()     // gives the Listener slot back; called once
	bufs    *sync.Pool // of *connBufs for this cfg; nil: allocate
}

// connBufs are a Conn's read buffers. A Listener reuses them: a fresh
// pair per connection was half of smtpd's allocation under a load of one
// mail per connection.
type connBufs struct {
	in   []byte
	pend []byte
}

// newConnBufs allocates the buffers for cfg.
func newConnBufs(cfg *Config) *connBufs {
	return &connBufs{
		in:   make([]byte, max(readBufSize, cfg.CommandLineMax+1)),
		pend: make([]byte, 0, readBufSize+len(endMarker)+8),
	}
}

// Conn is a net.Conn between the TCP socket and go-smtp that sees every
// byte in both directions and closes go-smtp's stream-level holes (see the
// package doc). It is returned by Listener.Accept; go-smtp (or the caller)
// must call Close.
//
// # Concurrency
//
// go-smtp calls Read and Write from one goroutine per connection. The
// guard relies on that ordering: a reply Write is always processed before
// the Read for the next client line, which is how the guard knows that a
// 354 reply puts the next Read into DATA mode. REQUIRES: Read is not called
// concurrently with Read, nor Write with Write. Close and the accessors
// (DataViolation, Capture, TLS, ...) are safe from any goroutine.
//
// Locks: rmu serialises the read side (input buffer, parser) and is held
// across socket reads; wmu serialises writes to the socket; mu guards the
// small shared state and is never held during I/O. Order: rmu, wmu, mu.
type Conn struct {
	p      connParams
	cfg    *Config
	raw    net.Conn
	log    atomic.Pointer[slog.Logger] // see logger
	start  time.Time                   // real time, for the session deadline
	startC time.Time                   // Config.Clock time, for capture offsets
	done   chan struct{}
	once   sync.Once

	rmu     sync.Mutex
	bufs    *connBufs // in and pendBuf, until Close gives them back
	in      []byte    // socket read buffer; unconsumed bytes are in[inR:inW]
	inR     int
	inW     int
	pend    []byte // bytes ready for go-smtp, a slice of pendBuf
	pendBuf []byte
	msgPend []byte // message bytes ready for Message's reader, a slice of pendBuf
	dp      dataParser
	via     via // who reads the current DATA stream
	// lineDue is when the command line being read must be complete:
	// IdleTimeout from when go-smtp asked for it, however the client
	// spreads its bytes (a slowloris drip of a byte a minute would
	// otherwise hold a slot until SessionTimeout).
	lineDue time.Time
	// readTotal counts client bytes read from the socket (after TLS);
	// dataFrom is consumed() when the current DATA stream began.
	readTotal int64
	dataFrom  int64
	// afterAuth: the last command line was AUTH, or a SASL response
	// redacted after it (see redactAuth).
	afterAuth bool

	wmu      sync.Mutex
	greeted  bool   // the greeting has been through Write
	wline    []byte // partial reply line awaiting its LF
	ehloHold []byte // EHLO reply lines held for rewriting

	mu struct {
		sync.Mutex
		conn        net.Conn // raw, or the *tls.Conn after STARTTLS
		mode        mode
		dataStart   bool // a 354 was written; Read resets the parser
		closed      bool
		afterClose  func() // see AfterClose
		tls         *tls.ConnectionState
		violation   string
		earlyTalker bool
		commands    int
		errors      int
		// Commands and 4xx/5xx replies since the last stored mail (the
		// limits apply to these, see DataStored and reply.go).
		sinceData       int
		junkSinceData   int
		errorsSinceData int
		// lastData is the client-byte range [from, to) of the last
		// complete DATA stream (see DataStored).
		lastData   [2]int64
		expectEHLO bool   // the line passed last was EHLO
		greeting   string // "EHLO" or "HELO" passed, its reply not yet seen
		extended   bool   // the last greeting answered 250 was EHLO, not HELO
		needHelo   bool   // TLS started; no EHLO or HELO since
		expectSASL bool   // the last reply was 334: next line is not a command
		swallow    bool   // drop the next reply (to our injected RSET)
		capture    capture
	}
}

var _ net.Conn = (*Conn)(nil)

func newConn(raw net.Conn, p connParams) *Conn {
	c := &Conn{
		p:      p,
		cfg:    p.cfg,
		raw:    raw,
		start:  time.Now(),
		startC: p.cfg.Clock(),
		done:   make(chan struct{}),
	}
	if p.bufs != nil {
		c.bufs, _ = p.bufs.Get().(*connBufs)
	}
	if c.bufs == nil {
		c.bufs = newConnBufs(p.cfg)
	}
	c.in, c.pendBuf = c.bufs.in, c.bufs.pend[:0]
	c.mu.conn = raw
	c.mu.capture.max = p.cfg.CaptureMax
	return c
}

// logger is the connection's logger, with its number and remote
// address, made on first use: With formats its attributes at once, and
// most connections log nothing.
func (c *Conn) logger() *slog.Logger {
	if l := c.log.Load(); l != nil {
		return l
	}
	l := c.cfg.Logger.With("conn", c.p.id, "remote", c.raw.RemoteAddr().String())
	if !c.log.CompareAndSwap(nil, l) {
		return c.log.Load()
	}
	return l
}

// --- accessors ---

// RemoteIP returns the client's IP address (the zero Addr if the remote
// address is not IP).
func (c *Conn) RemoteIP() netip.Addr { return c.p.ip }

// ID returns the connection's number, unique within its Listener.
func (c *Conn) ID() uint64 { return c.p.id }

// DataViolation returns why the current (or last) DATA stream was not
// clean: ViolationBareLF, ViolationDotCR or ViolationNUL; "" if it was
// clean. It is reset by each 354 reply. When it is set, the bytes the
// session read are a truncated prefix of the message followed by an empty
// line: the session must not store them and must answer 550 5.6.0
// (RFC 5321 §2.3.8, SMTP smuggling).
func (c *Conn) DataViolation() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.violation
}

// EarlyTalker reports whether the client spoke before the greeting.
func (c *Conn) EarlyTalker() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.earlyTalker
}

// Extended reports whether the client's last accepted greeting was EHLO
// rather than HELO: the session is ESMTP (RFC 5321 §4.4's "with" in the
// trace field). A refused greeting (501 to a HELO without a name) leaves
// the one before in force, as it does in go-smtp.
func (c *Conn) Extended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.extended
}

// Commands returns the number of command lines the client has sent.
func (c *Conn) Commands() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.commands
}

// Errors returns the number of error replies sent so far: 4xx/5xx, but
// 452 4.5.3 (see recipientsLater).
func (c *Conn) Errors() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.errors
}

// TLS returns the TLS state once STARTTLS has completed.
func (c *Conn) TLS() (tls.ConnectionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.tls == nil {
		return tls.ConnectionState{}, false
	}
	return *c.mu.tls, true
}

// Done returns a channel that is closed when the connection is closed, by
// go-smtp, by the guard, or by the caller.
func (c *Conn) Done() <-chan struct{} { return c.done }

// DataStored tells the guard that the message of the last DATA is stored
// and can be found again by ref (the session's reference to its rows): in
// the capture, the data's bytes are replaced by one DirMail record holding
// ref, so a capture does not keep every mail a second time. A replay
// fetches the data by ref. The command and error budgets (MaxCommands,
// MaxJunk, MaxErrors) count afresh from here. Call it at most once per
// DATA, after the data ended.
func (c *Conn) DataStored(ref string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A mail moved: the budgets are per stretch without one (Postfix
	// forgives a client's errors once a message is queued), so a sender
	// that reuses its connection for hundreds of mails is not cut off.
	c.mu.sinceData = 0
	c.mu.junkSinceData = 0
	c.mu.errorsSinceData = 0
	r := c.mu.lastData
	if r[1] <= r[0] {
		return
	}
	c.mu.capture.replaceClient(r[0], r[1], []byte(ref))
	c.mu.lastData = [2]int64{}
}

// consumed is how many client bytes the guard has handed on or used.
// REQUIRES: rmu held.
func (c *Conn) consumed() int64 { return c.readTotal - int64(c.inW-c.inR) }

// Capture returns the transcript recorded so far (nil if none: capture
// off, or no bytes yet) in the encoding that
// ParseCapture reads (see encodeCapture). It is complete once Done is
// closed.
func (c *Conn) Capture() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mu.capture.recs) == 0 {
		return nil // capture off, or nothing happened
	}
	return encodeCapture(c.mu.capture.recs)
}

// TakeCapture is Capture for the one caller that stores the transcript
// after the connection closed: it appends the encoding to dst (unchanged
// if there is none) and gives the capture's memory back for another
// connection; later calls, and Capture, find nothing. Before the
// connection is closed it is Capture appending to dst.
func (c *Conn) TakeCapture(dst []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mu.capture.recs) > 0 {
		dst = appendCapture(dst, c.mu.capture.recs)
	}
	if c.mu.closed {
		c.mu.capture.release()
	}
	return dst
}

// --- net.Conn ---

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the socket's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline does nothing: the guard owns the deadlines (Config
// timeouts). It exists because go-smtp sets deadlines when its own
// ReadTimeout/WriteTimeout are configured.
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing; see SetDeadline.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing; see SetDeadline.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the socket, releases the Listener slot and closes Done. It
// is idempotent and safe from any goroutine.
//
// The socket is closed with FIN, not a reset (package linger): what the
// client still sends is read and dropped for a moment. Closing a socket
// with unread input (an early talker's commands, commands pipelined after
// QUIT or a 421) sends a reset, which destroys what the client has not
// been sent yet, such as that 554 or 421. Nothing read meanwhile reaches
// go-smtp: fill drops it once the Conn is closed.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.mu.closed = true
		after := c.mu.afterClose
		c.mu.afterClose = nil
		c.mu.Unlock()
		// Close the raw socket, not a *tls.Conn: a TLS close_notify write
		// could block on a client that does not read.
		err = linger.Close(c.raw)
		if c.p.release != nil {
			c.p.release()
		}
		c.putBufs()
		close(c.done)
		if after != nil {
			after()
		}
	})
	return err
}

// AfterClose makes f run once the connection is closed (Done is closed
// then), in the goroutine that closes it, or at once if it is closed
// already. f must not block; it must not call Close. A later AfterClose
// replaces f. It spares a caller a goroutine per connection that only
// waits for Done.
func (c *Conn) AfterClose(f func()) {
	c.mu.Lock()
	if !c.mu.closed {
		c.mu.afterClose = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// putBufs gives the read buffers back to the Listener's pool, if no Read
// holds them. go-smtp's own Close at the end of a session finds them free;
// a Close from within Read (the guard ending a session) or from another
// goroutine during a Read leaves them to the garbage collector. Every
// later Read sees the closed flag before it could touch them.
func (c *Conn) putBufs() {
	if c.p.bufs == nil || !c.rmu.TryLock() {
		return
	}
	defer c.rmu.Unlock()
	if c.bufs == nil {
		return
	}
	c.p.bufs.Put(c.bufs)
	c.bufs, c.in, c.pendBuf, c.pend, c.msgPend = nil, nil, nil, nil, nil
	c.inR, c.inW = 0, 0
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

func (c *Conn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.conn
}

func (c *Conn) since() time.Duration { return c.cfg.Clock().Sub(c.startC) }

func (c *Conn) record(dir byte, p []byte) {
	at := c.since()
	c.mu.Lock()
	c.mu.capture.add(dir, at, p)
	c.mu.Unlock()
}

// --- writing ---

// writeSocket writes p to the client under wmu's caller-held lock.
// REQUIRES: wmu held.
func (c *Conn) writeSocketLocked(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if c.isClosed() {
		return ErrClosed
	}
	conn := c.conn()
	_ = conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	c.record(DirServer, p)
	if _, err := conn.Write(p); err != nil {
		_ = c.Close()
		return fmt.Errorf("guard: write reply: %w", errors.Join(err, ErrClosed))
	}
	return nil
}

// replyAndClose sends a final reply of the guard's own and closes the
// connection. It returns ErrClosed for the caller to pass on.
func (c *Conn) replyAndClose(reply string) error {
	c.wmu.Lock()
	_ = c.writeSocketLocked([]byte(reply))
	c.wmu.Unlock()
	_ = c.Close()
	return ErrClosed
}

// reply sends a reply of the guard's own and keeps the connection, unless
// it is one error too many. It waits and counts as go-smtp's replies do
// (Write): these answer the client's commands too, and when they did not
// count, a client could collect MaxCommands of them, never tarpitted.
func (c *Conn) reply(reply string) error {
	if err := c.tarpit(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeSocketLocked([]byte(reply)); err != nil {
		return err
	}
	c.mu.Lock()
	closeReply := c.countReplyLocked(parseReplyLine([]byte(reply)))
	c.mu.Unlock()
	if closeReply != "" {
		c.logger().Warn("too many errors", "errors", c.Errors())
		_ = c.writeSocketLocked([]byte(closeReply))
		_ = c.Close()
		return ErrClosed
	}
	return nil
}

// Write takes go-smtp's replies. The first Write (the greeting) runs the
// early-talker test. Replies are parsed line by line: EHLO replies are
// rewritten (no CHUNKING; STARTTLS when offered), a 354 switches the next
// Read to DATA mode, and 4xx/5xx replies are counted against MaxErrors.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.greeted {
		c.greeted = true
		if err := c.greetTest(); err != nil {
			return 0, err
		}
	}
	if err := c.tarpit(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return 0, ErrClosed
	}
	out, closeReply := c.processReplies(p)
	if err := c.writeSocketLocked(out); err != nil {
		return 0, err
	}
	if closeReply != "" {
		c.logger().Warn("too many errors", "errors", c.Errors())
		_ = c.writeSocketLocked([]byte(closeReply))
		_ = c.Close()
	}
	return len(p), nil
}

// tarpit waits errorDelay before a reply; ErrClosed if the connection is
// closed meanwhile.
func (c *Conn) tarpit() error {
	d := c.errorDelay()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.done:
		return ErrClosed
	}
}

// errorDelay is how long a reply waits: ErrorDelay once the session has
// collected SoftErrors error replies since its last stored mail, else 0.
func (c *Conn) errorDelay() time.Duration {
	if c.cfg.SoftErrors < 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.errorsSinceData >= c.cfg.SoftErrors {
		return c.cfg.ErrorDelay
	}
	return 0
}

// --- reading ---

// Read gives go-smtp the client's bytes: in command mode at most one line
// per call (so go-smtp never buffers past a command), in DATA mode the
// checked stream up to the strict end marker and never beyond it.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if n, ok := ready(p, &c.pend); ok {
			return n, nil
		}
		if c.isClosed() {
			return 0, ErrClosed
		}
		m := c.modeForRead()
		var err error
		if m == modeData {
			err = c.nextData(len(p))
		} else {
			err = c.nextCommand()
		}
		if err != nil {
			return 0, err
		}
	}
}

// fill reads more client bytes into the buffer. It sets the read deadline
// for m, and maps errors to the right reply and error for go-smtp.
// REQUIRES: rmu held.
func (c *Conn) fill(m mode) error {
	if c.inR > 0 {
		c.inW = copy(c.in, c.in[c.inR:c.inW])
		c.inR = 0
	}
	if c.inW == len(c.in) {
		return errors.New("guard: internal: read buffer full") // callers prevent this
	}
	// In DATA each read must make progress within DataTimeout (a large
	// mail over a slow link takes as long as it takes); a command line
	// must be whole by lineDue.
	dl := c.lineDue
	if m == modeData {
		dl = time.Now().Add(c.cfg.DataTimeout)
	}
	if end := c.start.Add(c.cfg.SessionTimeout); end.Before(dl) {
		dl = end
	}
	conn := c.conn()
	_ = conn.SetReadDeadline(dl)
	n, err := conn.Read(c.in[c.inW:])
	if c.isClosed() {
		// Read while Close lingers (see Close): dropped.
		return ErrClosed
	}
	if n > 0 {
		c.record(DirClient, c.in[c.inW:c.inW+n])
		c.inW += n
		c.readTotal += int64(n)
	}
	if err == nil || n > 0 {
		return nil
	}
	return c.readFailed(m, err)
}

// readFailed decides what a failed socket read means for go-smtp.
func (c *Conn) readFailed(m mode, err error) error {
	if c.isClosed() {
		return ErrClosed
	}
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	if timeout {
		c.logger().Warn("timeout", "mode", m)
		_ = c.replyAndClose(fmt.Sprintf("421 4.4.2 %s Error: timeout exceeded\r\n", c.cfg.Hostname))
	} else {
		_ = c.Close()
	}
	if m == modeData {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: read: %w", ErrDataAborted, err)
	}
	if errors.Is(err, io.EOF) {
		return io.EOF // go-smtp ends the session quietly
	}
	return fmt.Errorf("guard: read command: %w", errors.Join(err, ErrClosed))
}

// ready answers a Read from the bytes waiting in *pend, if any (or at
// once if p is empty): it returns how many it copied and true then.
func ready(p []byte, pend *[]byte) (int, bool) {
	if len(*pend) > 0 {
		n := copy(p, *pend)
		*pend = (*pend)[n:]
		return n, true
	}
	return 0, len(p) == 0
}

// modeForRead returns what the next client bytes are. After a 354 reply
// it starts a new DATA stream: at a line start, with a fresh parser.
// REQUIRES: rmu held.
func (c *Conn) modeForRead() mode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.dataStart {
		c.mu.dataStart = false
		c.dp = dataParser{}
		c.via = viaNone
		c.msgPend = nil
		c.dataFrom = c.consumed()
	}
	return c.mu.mode
}

// nextData runs the DATA parser over buffered input and leaves the bytes
// for go-smtp in pend. It consumes at most max input bytes so that pend
// stays about the size of go-smtp's buffer.
// REQUIRES: rmu held.
func (c *Conn) nextData(max int) error {
	if c.inR == c.inW {
		if err := c.fill(modeData); err != nil {
			return err
		}
	}
	in := c.in[c.inR:c.inW]
	if len(in) > max {
		in = in[:max]
	}
	if c.via == viaMessage {
		// The session stopped reading Message; go-smtp drains the rest.
		c.dp.mute()
	}
	c.via = viaSMTP
	c.dp.unstuff = false
	out, n := c.dp.feed(c.pendBuf[:0], in)
	c.inR += n
	c.pend = out
	c.fed()
	return nil
}

// fed records what the parser's last feed found: the first violation,
// and the end of the stream (back to command mode).
// REQUIRES: rmu held.
func (c *Conn) fed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dp.violation != c.mu.violation {
		c.logger().Warn("data violation", "violation", c.dp.violation)
		c.mu.violation = c.dp.violation
	}
	if c.dp.ended() {
		c.mu.mode = modeCommand
		c.mu.lastData = [2]int64{c.dataFrom, c.consumed()}
	}
}

// Message returns a reader of the current DATA's message, for the session
// to call first thing in its Data, instead of reading go-smtp's reader. It
// reads the socket itself: the message dot-unstuffed, bare CRs as
// bareCRMark, and io.EOF at the end marker, with the same checks, limits
// and capture as Read. This spares go-smtp's reader, which costs a
// function call per byte (a tenth of smtpd's CPU under load). Once it
// has returned io.EOF, go-smtp's reader is handed an end line, so it ends
// without seeing the message. If the session stops early, go-smtp reads
// the rest through Read as usual. No limit on the message size applies
// here (go-smtp's MaxMessageBytes counts only what it reads): the caller
// enforces its own.
func (c *Conn) Message() io.Reader { return (*messageReader)(c) }

// messageReader is Conn's Message reader.
type messageReader Conn

// minDirect is the least room in a Read's buffer for the parser to write
// into it directly; less goes through pendBuf.
const minDirect = 64

func (r *messageReader) Read(p []byte) (int, error) {
	c := (*Conn)(r)
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		// modeForRead first: at a new DATA it drops what the last message
		// left in msgPend when its session stopped reading early (over
		// SIZE); served first, those stale bytes began the next mail.
		m := c.modeForRead()
		if n, ok := ready(p, &c.msgPend); ok {
			return n, nil
		}
		if c.isClosed() {
			return 0, ErrClosed
		}
		if m != modeData {
			return 0, io.EOF
		}
		n, err := c.nextMessage(p)
		if err != nil || n > 0 {
			return n, err
		}
	}
}

// nextMessage runs the parser in unstuff mode over buffered input into p,
// or into pendBuf and msgPend when p is small. It returns how many bytes
// it put into p.
// REQUIRES: rmu held.
func (c *Conn) nextMessage(p []byte) (int, error) {
	if c.via == viaSMTP {
		return 0, errors.New("guard: Message called after go-smtp read part of the DATA")
	}
	c.via = viaMessage
	if c.inR == c.inW {
		if err := c.fill(modeData); err != nil {
			return 0, err
		}
	}
	in := c.in[c.inR:c.inW]
	c.dp.unstuff = true
	var n, consumed int
	if room := len(p) - 4; room >= minDirect {
		// The output is at most the input plus two held-back bytes, so it
		// stays within p and append does not move it; if it ever did, the
		// bytes would be in a new array (of a larger capacity) instead.
		in = in[:min(len(in), room)]
		var out []byte
		out, consumed = c.dp.feed(p[:0:len(p)], in)
		n = len(out)
		if cap(out) != len(p) {
			n = copy(p, out)
			c.msgPend = out[n:]
		}
	} else {
		in = in[:min(len(in), readBufSize)]
		var out []byte
		out, consumed = c.dp.feed(c.pendBuf[:0], in)
		n = copy(p, out)
		c.msgPend = out[n:]
	}
	c.inR += consumed
	c.fed()
	if c.dp.ended() {
		// go-smtp's reader, at a line start, takes this as the end.
		c.pend = []byte(".\r\n")
	}
	return n, nil
}

// nextCommand reads one command line, checks it and leaves it in pend (or
// handles it itself: STARTTLS, refused commands).
// REQUIRES: rmu held.
func (c *Conn) nextCommand() error {
	c.lineDue = time.Now().Add(c.cfg.IdleTimeout)
	scan := 0
	var line []byte
	for {
		buf := c.in[c.inR:c.inW]
		if i := bytes.IndexByte(buf[scan:], '\n'); i >= 0 {
			line = buf[:scan+i+1]
			break
		}
		scan = len(buf)
		if scan > c.cfg.CommandLineMax {
			break // too long already; do not wait for the rest
		}
		if err := c.fill(modeCommand); err != nil {
			return err
		}
	}
	if line == nil || len(line) > c.cfg.CommandLineMax {
		// An XOAUTH2 or OAUTHBEARER token is often longer than a command
		// line may be: the capture must not keep it either.
		if line == nil {
			line = c.in[c.inR:c.inW]
		}
		c.mu.Lock()
		sasl := c.mu.expectSASL
		c.mu.Unlock()
		if sasl || c.afterAuth || isAuthLine(line) {
			c.redactAuth(line, c.consumed(), sasl, true)
		}
		c.logger().Warn("command line too long")
		return c.replyAndClose(fmt.Sprintf("500 5.5.2 %s Error: line too long\r\n", c.cfg.Hostname))
	}
	c.inR += len(line)
	return c.command(line)
}

// command applies the command-mode rules to one complete line.
// REQUIRES: rmu held.
func (c *Conn) command(line []byte) error {
	c.mu.Lock()
	c.mu.commands++
	c.mu.sinceData++
	n := c.mu.sinceData
	sasl := c.mu.expectSASL
	c.mu.expectSASL = false
	c.mu.Unlock()
	if sasl || c.afterAuth || isAuthLine(line) {
		c.redactAuth(line, c.consumed()-int64(len(line)), sasl, false)
	}
	h := c.cfg.Hostname
	if n > c.cfg.MaxCommands {
		c.logger().Warn("too many commands", "commands", n)
		return c.replyAndClose(fmt.Sprintf("421 4.7.0 %s Error: too many commands\r\n", h))
	}
	if i := controlByte(line); i >= 0 {
		// SMTP commands are printable text (RFC 5321 §4.1.1; 8-bit only
		// with SMTPUTF8). A NUL, a bare CR or another control byte is
		// an attack or garbage: it would end up in a Received field or a
		// throw-in row, or look like a line end to another parser.
		c.logger().Warn("control byte in command line", "byte", line[i])
		return c.replyAndClose(fmt.Sprintf("500 5.5.2 %s Error: control character in command\r\n", h))
	}
	if sasl {
		// A SASL response (after 334) is not a command.
		c.pend = append(c.pendBuf[:0], line...)
		return nil
	}
	verb, arg := splitCommand(line)
	if junkCommands[verb] {
		c.mu.Lock()
		c.mu.junkSinceData++
		junk := c.mu.junkSinceData
		c.mu.Unlock()
		if junk > c.cfg.MaxJunk {
			c.logger().Warn("too many junk commands", "commands", junk)
			return c.replyAndClose(fmt.Sprintf("421 4.7.0 %s Error: too many commands that move no mail\r\n", h))
		}
	}
	if why := nonSMTP(line, verb); why != "" {
		// Another protocol or a mail body sent as commands: answering each
		// line with 500 until MaxErrors would run whatever SMTP commands
		// the stream holds (a browser's form post, a body after a failed
		// DATA). Postfix's smtpd_forbidden_commands does the same.
		c.logger().Warn("non-SMTP command; closing", "why", why)
		return c.replyAndClose(fmt.Sprintf("221 2.7.0 %s Error: %s; closing\r\n", h, why))
	}
	switch verb {
	case "BDAT":
		// go-smtp always handles BDAT; we never offer CHUNKING, and a chunk
		// of unknown framing cannot be skipped safely, so the session ends.
		c.logger().Warn("BDAT without CHUNKING")
		return c.replyAndClose(fmt.Sprintf("502 5.5.1 %s Error: CHUNKING not offered\r\n", h))
	case "STARTTLS":
		if c.cfg.TLS != nil && !c.isTLS() {
			return c.startTLS(arg)
		}
	case "EHLO":
		c.mu.Lock()
		c.mu.expectEHLO = true
		c.mu.greeting = verb
		c.mu.needHelo = false
		c.mu.Unlock()
	case "HELO":
		c.mu.Lock()
		c.mu.greeting = verb
		c.mu.needHelo = false
		c.mu.Unlock()
	case "MAIL", "RCPT", "DATA":
		c.mu.Lock()
		need := c.mu.needHelo
		c.mu.Unlock()
		if need {
			// RFC 3207 §4.2: after TLS the client must greet again; go-smtp
			// would still remember the greeting from before TLS.
			return c.reply(fmt.Sprintf("503 5.5.1 %s Error: send EHLO again after STARTTLS\r\n", h))
		}
		if verb == "RCPT" {
			line = postmasterPath(line, c.cfg.Postmaster)
		}
	}
	c.pend = append(c.pendBuf[:0], line...)
	return nil
}

// Marks that stand for a credential in the capture (see redactAuth).
// Each keeps what decides the reply to its line, so that a replay of the
// capture gets the replies the recorded session got: authMark is valid
// base64 (a SASL response go-smtp decodes) and starts with a letter (a
// command go-smtp does not know); badAuthMark is neither (go-smtp's
// "Invalid base64 data"; the guard's "not an SMTP command").
const (
	authMark    = "REDACTED"
	badAuthMark = "[redacted]"
)

// redactAuth keeps credentials out of the capture, which smtpd stores in
// dbd and replay tools show. smtpd offers no AUTH, but a client set up
// for a submission server sends its password anyway: as the initial
// response of AUTH, as SASL responses after a 334, or as lines after the
// AUTH that go-smtp answers as unknown commands (a client that does not
// wait for the 334, or ignores the error). In the capture those bytes are
// replaced by a mark; the verb and mechanism stay, and the line itself
// goes on to go-smtp unchanged. The line starts at client stream offset
// from. With keepLen (a line too long, refused whole by its length) the
// mark is as long as the bytes it stands for.
// REQUIRES: rmu held.
func (c *Conn) redactAuth(line []byte, from int64, sasl, keepLen bool) {
	after := c.afterAuth
	c.afterAuth = false
	i, j := lineContent(line)
	mark := ""
	switch {
	case sasl:
		c.afterAuth = true
		if string(line[i:j]) == "*" { // a cancel, no secret
			return
		}
		mark = base64Mark(line[i:j])
	case isAuthLine(line):
		c.afterAuth = true
		// AUTH SP mechanism SP initial-response: the response is
		// go-smtp's second field; anything after it goes too.
		i = 4
		for k := 0; k < 2; k++ {
			for i < j && isBlank(line[i]) {
				i++
			}
			for k == 0 && i < j && !isBlank(line[i]) {
				i++
			}
		}
		t := i
		for t < j && !isBlank(line[t]) {
			t++
		}
		mark = base64Mark(line[i:t])
	case after && saslToken(line[i:j]):
		c.afterAuth = true
		mark = badAuthMark
		if isLetter(line[i]) {
			mark = authMark
		}
	}
	if i >= j || mark == "" {
		return
	}
	if keepLen {
		mark = strings.Repeat("X", j-i)
	}
	c.mu.Lock()
	c.mu.capture.redactClient(from+int64(i), from+int64(j), []byte(mark))
	c.mu.Unlock()
}

// isAuthLine reports whether line is an AUTH command.
func isAuthLine(line []byte) bool {
	return len(line) >= 5 && bytes.EqualFold(line[:4], []byte("AUTH")) && (isBlank(line[4]) || line[4] == '\r' || line[4] == '\n')
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// lineContent returns the bounds of line without its line end and its
// leading and trailing blanks.
func lineContent(line []byte) (i, j int) {
	j = len(line)
	for j > 0 && (line[j-1] == '\n' || line[j-1] == '\r' || isBlank(line[j-1])) {
		j--
	}
	for i < j && isBlank(line[i]) {
		i++
	}
	return i, j
}

// base64Mark returns the mark for a SASL response: authMark if go-smtp
// decodes it, as it does "=" (an empty response), else badAuthMark.
func base64Mark(resp []byte) string {
	if string(resp) == "=" {
		return authMark
	}
	if _, err := base64.StdEncoding.DecodeString(string(resp)); err != nil {
		return badAuthMark
	}
	return authMark
}

// saslToken reports whether a line's content could be a SASL response
// (one base64 token) rather than a command: a four-letter SMTP verb
// alone, and STARTTLS, are commands (go-smtp takes a four-byte line as
// its verb, and any line that starts with STARTTLS as STARTTLS).
func saslToken(s []byte) bool {
	if len(s) == 0 || len(s) >= 8 && bytes.EqualFold(s[:8], []byte("STARTTLS")) {
		return false
	}
	for _, c := range s {
		if !isLetter(c) && (c < '0' || c > '9') && c != '+' && c != '/' && c != '=' {
			return false
		}
	}
	return len(s) != 4 || !smtpVerbs[string(bytes.ToUpper(s))]
}

// smtpVerbs are the verbs go-smtp acts on.
var smtpVerbs = map[string]bool{
	"HELO": true, "EHLO": true, "LHLO": true, "MAIL": true, "RCPT": true,
	"DATA": true, "BDAT": true, "RSET": true, "NOOP": true, "QUIT": true,
	"VRFY": true, "EXPN": true, "HELP": true, "AUTH": true, "SEND": true,
	"SOML": true, "SAML": true, "TURN": true,
}

// postmasterPath returns an RCPT line whose path is <Postmaster> (in any
// case, no domain) with that path replaced by <mailbox>; any other line
// as it is.
func postmasterPath(line []byte, mailbox string) []byte {
	lt := bytes.IndexByte(line, '<')
	gt := bytes.IndexByte(line, '>')
	if lt < 0 || gt < lt || !model.IsPostmaster(bytes.TrimSpace(line[lt+1:gt])) {
		return line
	}
	out := make([]byte, 0, len(line)+len(mailbox))
	out = append(out, line[:lt+1]...)
	out = append(out, mailbox...)
	return append(out, line[gt:]...)
}

// controlByte returns the index of the first control byte (C0 other than
// HTAB, or DEL) in a command line before its line end, or -1.
func controlByte(line []byte) int {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	for i, c := range line[:n] {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

// junkCommands move no mail; MaxJunk bounds them between two stored mails.
var junkCommands = map[string]bool{"NOOP": true, "RSET": true, "VRFY": true, "EXPN": true, "HELP": true}

// httpMethods are HTTP request methods: a web client or a proxy abuse
// attempt (CONNECT), never SMTP.
var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true,
}

// nonSMTP says why a command line is not SMTP at all, or "": an HTTP
// request line, a header field ("Subject: hi": message content sent as
// commands), or a line that does not start with a letter (TLS records
// on the plain port, binary junk). An empty line is left to go-smtp (a
// syntax error).
func nonSMTP(line []byte, verb string) string {
	switch {
	case len(line) == 0 || line[0] == '\r' || line[0] == '\n':
		return ""
	case !isLetter(line[0]):
		return "not an SMTP command"
	case httpMethods[verb]:
		return "HTTP request"
	case strings.Contains(verb, ":"):
		return "message header sent as a command"
	}
	return ""
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func (c *Conn) isTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.tls != nil
}

// splitCommand returns the upper-cased verb and the trimmed argument of a
// command line. go-smtp treats any line that starts with STARTTLS as
// STARTTLS, so the guard does the same.
func splitCommand(line []byte) (verb string, arg []byte) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) >= 8 && bytes.EqualFold(line[:8], []byte("STARTTLS")) {
		return "STARTTLS", bytes.TrimSpace(line[8:])
	}
	v, a, _ := bytes.Cut(line, []byte{' '})
	return string(bytes.ToUpper(v)), bytes.TrimSpace(a)
}

// greetTest runs the early-talker test before the greeting is written:
// a client that sends anything within GreetPause is rejected.
func (c *Conn) greetTest() error {
	if c.cfg.GreetPause < 0 || (c.p.pass != nil && c.p.pass.passed(c.p.ip)) {
		return nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	_ = c.raw.SetReadDeadline(time.Now().Add(c.cfg.GreetPause))
	n, err := c.raw.Read(c.in[c.inW:])
	if n > 0 {
		c.record(DirClient, c.in[c.inW:c.inW+n])
		c.inW += n
		c.readTotal += int64(n)
		c.mu.Lock()
		c.mu.earlyTalker = true
		c.mu.Unlock()
		c.logger().Warn("early talker")
		return c.replyAndClose(fmt.Sprintf("554 5.5.1 %s Error: client spoke before the greeting\r\n", c.cfg.Hostname))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c.p.pass != nil {
			c.p.pass.add(c.p.ip)
		}
		return nil
	}
	_ = c.Close()
	if err == nil {
		err = io.ErrNoProgress
	}
	return fmt.Errorf("guard: wait before greeting: %w", errors.Join(err, ErrClosed))
}
