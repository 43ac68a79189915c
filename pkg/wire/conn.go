package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"
)

// Connection errors. The errors returned by Conn wrap these with detail; use
// errors.Is.
var (
	// ErrTruncated is returned when the stream ends, cleanly or not,
	// without an authenticated CLOSE frame.
	ErrTruncated = errors.New("wire: stream truncated without CLOSE")
	// ErrDecrypt is returned when a frame fails authentication: it was
	// tampered with, replayed, reordered, dropped before, reflected or
	// spliced from another session.
	ErrDecrypt = errors.New("wire: frame failed authentication")
	// ErrClosed is returned by calls on a Conn after Close.
	ErrClosed = errors.New("wire: connection closed")
	// ErrNonceExhausted is returned when a direction has used its last
	// nonce. The session must end; open a new connection.
	ErrNonceExhausted = errors.New("wire: nonce space exhausted, reconnect")
)

// closeTimeout bounds how long Close waits to send the CLOSE frame.
const closeTimeout = time.Second

// ServerConfig configures ServerHandshake. A zero field means its default.
type ServerConfig struct {
	// Static is the server's key pair. Required.
	Static KeyPair
	// Previous are older server key pairs still accepted while clients
	// move to Static's public key (a rotation, docs/roles.md §7): a
	// client that pins one of them completes its handshake as before.
	// They are tried after Static, each costing one more X25519 for
	// message 1 of an older key's client. Default none.
	Previous []KeyPair
	// Authorize decides whether a client's static key may connect: nil
	// error means allowed. It runs after message 1 has been decrypted, so
	// the key is authenticated (but see docs/wire.md §4 on KCI). Required.
	Authorize func(PublicKey) error
	// Replay remembers recent client ephemeral keys. One cache must be
	// shared by all connections of a server, and its TTL must be at least
	// 2×Window. Required.
	Replay *ReplayCache
	// Now is the clock the client timestamps are checked against.
	// Default time.Now.
	Now func() time.Time
	// Window is how far a client timestamp may be from Now. Default 2m.
	Window time.Duration
	// HandshakeTimeout bounds the whole handshake. Default 5s.
	HandshakeTimeout time.Duration
	// RekeyFrames is the number of frames in one direction after which
	// both sides rekey that direction. Must be equal on both sides.
	// Default 1<<20; small values are for tests.
	RekeyFrames uint64
	// MaxFrame is the largest transport ciphertext the server accepts,
	// announced to the client in message 2; between MinMaxCiphertext and
	// MaxCiphertext. Default MaxCiphertext.
	MaxFrame int
}

// ClientConfig configures ClientHandshake. A zero field means its default.
type ClientConfig struct {
	// Static is the client's key pair. Required.
	Static KeyPair
	// Server is the pinned static key of the server. Required.
	Server PublicKey
	// Now is the clock that stamps message 1. Default time.Now.
	Now func() time.Time
	// HandshakeTimeout bounds the whole handshake. Default 5s.
	HandshakeTimeout time.Duration
	// RekeyFrames must equal the server's. Default 1<<20.
	RekeyFrames uint64
}

// serverParams is a ServerConfig with defaults applied, plus the knobs
// tests change.
type serverParams struct {
	responder
	nowFn   func() time.Time
	timeout time.Duration
	rekey   uint64
}

func (cfg *ServerConfig) params() (*serverParams, error) {
	var problems []error
	if cfg.Static.Private == [KeySize]byte{} {
		problems = append(problems, errors.New("static key pair is required"))
	} else if err := cfg.Static.checkCached(); err != nil {
		problems = append(problems, err)
	}
	for i := range cfg.Previous {
		if err := cfg.Previous[i].checkCached(); err != nil {
			problems = append(problems, fmt.Errorf("previous key %d: %w", i+1, err))
		}
	}
	if cfg.Authorize == nil {
		problems = append(problems, errors.New("the Authorize function is required"))
	}
	p := &serverParams{
		responder: responder{
			static:    &cfg.Static,
			previous:  cfg.Previous,
			authorize: cfg.Authorize,
			replay:    cfg.Replay,
			window:    orDefault(cfg.Window, DefaultWindow),
			payload:   msg2Payload{Version: ProtocolVersion, MaxFrame: MaxCiphertext},
			prologue:  []byte(Prologue),
		},
		nowFn:   cfg.Now,
		timeout: orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout),
		rekey:   orDefault(cfg.RekeyFrames, DefaultRekeyFrames),
	}
	if p.nowFn == nil {
		p.nowFn = time.Now
	}
	switch {
	case cfg.Replay == nil:
		problems = append(problems, errors.New("a Replay cache is required"))
	case cfg.Replay.TTL() < 2*p.window:
		problems = append(problems, fmt.Errorf("%w: TTL %s, window %s", errReplayShort, cfg.Replay.TTL(), p.window))
	}
	switch {
	case cfg.MaxFrame == 0:
	case cfg.MaxFrame < MinMaxCiphertext || cfg.MaxFrame > MaxCiphertext:
		problems = append(problems, fmt.Errorf("MaxFrame %d outside [%d, %d]", cfg.MaxFrame, MinMaxCiphertext, MaxCiphertext))
	default:
		p.payload.MaxFrame = uint16(cfg.MaxFrame)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("wire: server config: %w", err)
	}
	return p, nil
}

// clientParams is a ClientConfig with defaults applied, plus the knobs
// tests change.
type clientParams struct {
	static   *KeyPair
	server   PublicKey
	now      func() time.Time
	timeout  time.Duration
	rekey    uint64
	prologue []byte
	rng      io.Reader // nil: crypto/rand
}

func (cfg *ClientConfig) params() (*clientParams, error) {
	var problems []error
	if cfg.Static.Private == [KeySize]byte{} {
		problems = append(problems, errors.New("static key pair is required"))
	} else if err := cfg.Static.checkCached(); err != nil {
		problems = append(problems, err)
	}
	if cfg.Server.IsZero() {
		problems = append(problems, errors.New("server key is required"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("wire: client config: %w", err)
	}
	p := &clientParams{
		static:   &cfg.Static,
		server:   cfg.Server,
		now:      cfg.Now,
		timeout:  orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout),
		rekey:    orDefault(cfg.RekeyFrames, DefaultRekeyFrames),
		prologue: []byte(Prologue),
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// orDefault returns v, or def if v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// ServerHandshake runs the server side of the handshake on nc: it reads
// message 1, checks it (see ServerConfig) and answers message 2. On success
// the returned Conn owns nc. On failure nc is closed without a word to the
// peer and the error is a *HandshakeError (or a config error). The whole
// handshake is bounded by cfg.HandshakeTimeout and ctx.
func ServerHandshake(ctx context.Context, nc net.Conn, cfg *ServerConfig) (*Conn, error) {
	p, err := cfg.params()
	if err != nil {
		nc.Close()
		return nil, err
	}
	return serverHandshake(ctx, nc, p)
}

func serverHandshake(ctx context.Context, nc net.Conn, p *serverParams) (*Conn, error) {
	var s *session
	err := withDeadline(ctx, nc, p.timeout, func() error {
		msg1, err := readHandshakeMsg(nc, Msg1Size)
		if err != nil {
			return err
		}
		r := p.responder
		r.now = p.nowFn()
		msg2, sess, err := r.respond(msg1)
		if err != nil {
			return err
		}
		if err := writeHandshakeMsg(nc, msg2); err != nil {
			return err
		}
		s = sess
		return nil
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return newConn(nc, s, p.rekey), nil
}

// ClientHandshake runs the client side of the handshake on nc: it sends
// message 1 to the pinned server key and reads message 2. On success the
// returned Conn owns nc. On failure nc is closed and the error is a
// *HandshakeError (or a config error). A server that refuses the client
// just closes the connection, which the client sees as Reason closed.
func ClientHandshake(ctx context.Context, nc net.Conn, cfg *ClientConfig) (*Conn, error) {
	p, err := cfg.params()
	if err != nil {
		nc.Close()
		return nil, err
	}
	return clientHandshake(ctx, nc, p)
}

func clientHandshake(ctx context.Context, nc net.Conn, p *clientParams) (*Conn, error) {
	var s *session
	err := withDeadline(ctx, nc, p.timeout, func() error {
		in, msg1, err := initiate(p.static, p.server, p.now(), p.prologue, p.rng)
		if err != nil {
			return err
		}
		if err := writeHandshakeMsg(nc, msg1); err != nil {
			return err
		}
		msg2, err := readHandshakeMsg(nc, Msg2Size)
		if err != nil {
			return err
		}
		s, err = in.finish(msg2)
		return err
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return newConn(nc, s, p.rekey), nil
}

// withDeadline runs fn with nc's deadline set to the earlier of now+timeout
// and ctx's deadline, and with ctx's cancellation interrupting nc's I/O. It
// clears the deadline afterwards. An I/O error from fn becomes a
// *HandshakeError with Reason timeout, canceled or closed.
func withDeadline(ctx context.Context, nc net.Conn, timeout time.Duration, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return hsError(ReasonClosed, err)
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past wakes any blocked Read or Write.
		nc.SetDeadline(time.Unix(1, 0))
	})
	err := fn()
	if !stop() {
		// ctx ended while fn ran; whatever fn returned, the deadline is
		// now poisoned and the handshake does not count.
		return ctxError(ctx.Err())
	}
	if err != nil {
		var he *HandshakeError
		switch {
		case errors.As(err, &he):
			return err
		case errors.Is(err, os.ErrDeadlineExceeded):
			return hsError(ReasonTimeout, err)
		default:
			return hsError(ReasonClosed, err)
		}
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return hsError(ReasonClosed, err)
	}
	return nil
}

func ctxError(err error) *HandshakeError {
	if errors.Is(err, context.DeadlineExceeded) {
		return hsError(ReasonTimeout, err)
	}
	return hsError(ReasonCanceled, err)
}

// readHandshakeMsg reads one length-prefixed handshake message whose size
// must be exactly want. The prefix is checked before the body is read.
func readHandshakeMsg(r io.Reader, want int) ([]byte, error) {
	var hdr [LengthSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if n := int(binary.BigEndian.Uint16(hdr[:])); n != want {
		return nil, hsError(ReasonMalformed, fmt.Errorf("handshake message length %d, want %d", n, want))
	}
	msg := make([]byte, want)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// writeHandshakeMsg writes one length-prefixed handshake message.
func writeHandshakeMsg(w io.Writer, msg []byte) error {
	b := make([]byte, 0, LengthSize+len(msg))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	_, err := w.Write(append(b, msg...))
	return err
}

// Conn is an established session: a stream of encrypted, authenticated
// frames over a net.Conn. Make one with ServerHandshake or ClientHandshake;
// it owns the net.Conn, and the caller must call Close.
//
// Concurrency: WriteFrame may be called from many goroutines (writers are
// serialised); ReadFrame from one goroutine at a time (callers are
// serialised too, but interleaving readers makes no sense). Close, the
// deadline setters and the accessors are safe at any time.
//
// Failure is final. Any read failure other than a deadline passing before
// the first byte of a frame (a truncated stream, a bad length, a frame that
// fails authentication, a malformed plaintext) and any write failure
// closes the net.Conn at once, without a CLOSE frame, and every later call
// returns the same error. The receive nonce never advances on a failure and
// the reader never tries to resynchronise.
type Conn struct {
	nc      net.Conn
	peer    PublicKey
	id      []byte
	sendMax int // largest ciphertext the peer accepts
	recvMax int // largest ciphertext we accept
	rekey   uint64

	rmu   sync.Mutex // serialises readers; guards the fields below
	recv  *noise.CipherState
	nrecv uint64 // frames received, for rekeying
	rbuf  []byte // ciphertext buffer, grown only as bytes arrive
	reof  bool   // a CLOSE frame was received
	br    *bufio.Reader

	// wwait counts writers waiting for wmu. A writer that finds others
	// waiting leaves its frame in bw for the last of them to flush, so
	// frames of concurrent requests share one write(2) (write combining);
	// the last writer always flushes, so no frame is left behind.
	wwait atomic.Int32

	wmu   sync.Mutex // serialises writers; guards the fields below
	send  *noise.CipherState
	nsent uint64 // frames sent, for rekeying
	wbuf  []byte // length prefix ‖ ciphertext of the frame being sent
	bw    *bufio.Writer
	wdone error // writes refused from now on (ErrNonceExhausted, ErrClosed)

	state struct {
		sync.Mutex
		err     error // the first fatal error; the net.Conn is closed
		closing bool  // Close was called
	}
	closeOnce sync.Once
	closeErr  error
}

func newConn(nc net.Conn, s *session, rekey uint64) *Conn {
	return &Conn{
		nc:      nc,
		peer:    s.peer,
		id:      s.id,
		sendMax: s.sendMax,
		recvMax: s.recvMax,
		rekey:   rekey,
		recv:    s.recv,
		send:    s.send,
		// Buffered I/O: many pipelined frames per read(2) and write(2).
		// Both buffers are fixed, so a silent peer still costs no more.
		br: bufio.NewReaderSize(nc, readBufferSize),
		bw: bufio.NewWriterSize(nc, writeBufferSize),
	}
}

// Socket buffer sizes of a Conn.
const (
	readBufferSize  = 16 << 10
	writeBufferSize = 32 << 10
)

// PeerStatic returns the peer's authenticated static public key.
func (c *Conn) PeerStatic() PublicKey { return c.peer }

// SessionID returns the Noise handshake hash, equal on both ends and unique
// per session: use it to name the session in logs, or as a channel binding.
// The caller must not modify it.
func (c *Conn) SessionID() []byte { return c.id }

// MaxFrameData returns the largest Data a WriteFrame on c accepts, which
// is MaxFrameData unless the server announced a smaller limit.
func (c *Conn) MaxFrameData() int { return c.sendMax - TagSize - FrameHeaderSize }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetReadDeadline sets the deadline for ReadFrame. A deadline that passes
// while ReadFrame waits for the first byte of a frame returns a timeout
// error and leaves c usable; one that passes mid-frame kills c.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if err := c.fatal(); err != nil {
		return err
	}
	return c.nc.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline for WriteFrame. A write that times
// out kills c, since part of the frame may have been sent.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.fatal(); err != nil {
		return err
	}
	return c.nc.SetWriteDeadline(t)
}

// fatal returns the error that killed c, or nil.
func (c *Conn) fatal() error {
	c.state.Lock()
	defer c.state.Unlock()
	return c.state.err
}

// fail records err as the error that killed c (unless c is already dead)
// and closes the net.Conn. It returns the recorded error: after Close, I/O
// errors caused by the closed socket are reported as ErrClosed.
func (c *Conn) fail(err error) error {
	c.state.Lock()
	defer c.state.Unlock()
	if c.state.err == nil {
		if c.state.closing {
			err = ErrClosed
		}
		c.state.err = err
		c.nc.Close()
	}
	return c.state.err
}

// ReadFrame reads, authenticates and decodes the next frame. The returned
// Data is owned by the caller. A CLOSE frame from the peer returns io.EOF,
// and so does every later call. Any other failure kills c (see Conn) and
// returns an error wrapping ErrTruncated (the stream ended, or was reset,
// without CLOSE), ErrDecrypt, ErrFrameTooLarge, ErrBadFrame,
// ErrNonceExhausted, ErrClosed (after Close), or os.ErrDeadlineExceeded.
func (c *Conn) ReadFrame() (Frame, error) { return c.ReadFrameTo(nil) }

// ReadFrameTo is ReadFrame, decrypting into buf's memory when it is large
// enough (MaxFrameData()+FrameHeaderSize bytes always are). The returned
// Data then aliases buf and is valid only until buf is reused: a reader
// that copies each frame onward (as dbd does into a request's buffer)
// thus allocates nothing per frame. With a nil or small buf, Data is a
// fresh allocation owned by the caller.
func (c *Conn) ReadFrameTo(buf []byte) (Frame, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.reof {
		return Frame{}, io.EOF
	}
	if err := c.fatal(); err != nil {
		return Frame{}, err
	}
	f, err := c.readFrameLocked(buf)
	switch {
	case err == nil:
		return f, nil
	case err == io.EOF:
		c.reof = true
		return Frame{}, io.EOF
	}
	if idle := (*idleTimeout)(nil); errors.As(err, &idle) {
		return Frame{}, idle.err
	}
	return Frame{}, c.fail(err)
}

// idleTimeout wraps a read deadline that passed before any byte of the
// next frame was read; the stream is intact and c stays usable.
type idleTimeout struct{ err error }

func (e *idleTimeout) Error() string { return e.err.Error() }
func (e *idleTimeout) Unwrap() error { return e.err }

// readFrameLocked reads one frame. It returns io.EOF for a CLOSE frame.
// REQUIRES: c.rmu held.
func (c *Conn) readFrameLocked(dst []byte) (Frame, error) {
	var hdr [LengthSize]byte
	if n, err := io.ReadFull(c.br, hdr[:]); err != nil {
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			return Frame{}, &idleTimeout{fmt.Errorf("wire: read frame: %w", err)}
		}
		if n == 0 {
			return Frame{}, readError(err, fmt.Sprintf("after %d frames", c.nrecv))
		}
		return Frame{}, readError(err, "inside a length prefix")
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	switch {
	case n < MinCiphertext:
		return Frame{}, fmt.Errorf("%w: length %d below %d", ErrBadFrame, n, MinCiphertext)
	case n > c.recvMax:
		return Frame{}, fmt.Errorf("%w: length %d above %d", ErrFrameTooLarge, n, c.recvMax)
	}
	ct, err := c.readBodyLocked(n)
	if err != nil {
		return Frame{}, err
	}
	last := c.recv.Nonce() == noise.MaxNonce
	if cap(dst) < n-TagSize {
		dst = make([]byte, 0, n-TagSize)
	}
	plain, err := c.recv.Decrypt(dst[:0], nil, ct)
	if err != nil {
		if errors.Is(err, noise.ErrMaxNonce) {
			return Frame{}, fmt.Errorf("%w: receive side", ErrNonceExhausted)
		}
		return Frame{}, fmt.Errorf("%w: frame %d: %v", ErrDecrypt, c.nrecv, err)
	}
	c.nrecv++
	if c.nrecv%c.rekey == 0 {
		c.recv.Rekey()
	}
	f, err := DecodeFrame(plain)
	if err != nil {
		return Frame{}, fmt.Errorf("frame %d: %w", c.nrecv-1, err)
	}
	if f.Flags&FlagClose != 0 {
		return Frame{}, io.EOF
	}
	if last {
		// The last nonce is reserved for CLOSE (see WriteFrame).
		return Frame{}, fmt.Errorf("%w: data frame on the last nonce", ErrNonceExhausted)
	}
	if len(f.Data) == 0 {
		f.Data = nil
	}
	return f, nil
}

// readError classifies a read error that ends the stream where no CLOSE
// frame was received. A passed deadline stays a timeout; the end of the
// stream, a reset or any other network error wraps ErrTruncated.
func readError(err error, where string) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("wire: read frame: timeout %s: %w", where, err)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: stream ended %s", ErrTruncated, where)
	default:
		return fmt.Errorf("%w: stream ended %s: %w", ErrTruncated, where, err)
	}
}

// readBodyLocked reads n ciphertext bytes into c.rbuf, growing it only as
// bytes arrive, so a peer that announces a large frame and then stays
// silent costs no memory.
// REQUIRES: c.rmu held.
func (c *Conn) readBodyLocked(n int) ([]byte, error) {
	const step = 4096
	buf := c.rbuf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, max(step, 2*cap(buf))))
			copy(nb, buf)
			buf = nb
		}
		m, err := c.br.Read(buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			c.rbuf = buf[:0]
			return nil, readError(err, fmt.Sprintf("inside frame %d (%d of %d bytes)", c.nrecv, len(buf), n))
		}
	}
	c.rbuf = buf[:0]
	return buf, nil
}

// WriteFrame encrypts f and writes it as one frame. It is safe for
// concurrent use; frames are written whole and in call order. It refuses,
// without harming c, a frame with more than MaxFrameData() data bytes, a
// reserved flag, or FlagClose (Close sends CLOSE). When the send nonce
// reaches its last value, reserved for CLOSE, it returns ErrNonceExhausted;
// the caller should Close and reconnect. Any write error kills c.
func (c *Conn) WriteFrame(f Frame) error { return c.writeFrame(f, nil) }

// WriteFrameParts is WriteFrame for a frame whose data is f.Data followed
// by parts: the parts are copied straight into the buffer they are
// encrypted in, instead of being gathered into one slice first (a request
// made of a header and large contents).
func (c *Conn) WriteFrameParts(f Frame, parts [][]byte) error { return c.writeFrame(f, parts) }

func (c *Conn) writeFrame(f Frame, parts [][]byte) error {
	if f.Flags&FlagClose != 0 {
		return fmt.Errorf("%w: CLOSE is sent only by Close", ErrBadFrame)
	}
	size := len(f.Data)
	for _, p := range parts {
		size += len(p)
	}
	if size > c.MaxFrameData() {
		return fmt.Errorf("%w: %d data bytes, peer accepts %d", ErrFrameTooLarge, size, c.MaxFrameData())
	}
	c.wwait.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	last := c.wwait.Add(-1) == 0
	if err := c.fatal(); err != nil {
		return err
	}
	if c.wdone != nil {
		return c.wdone
	}
	if err := c.writeLocked(f, parts, size); err != nil {
		return err
	}
	if last {
		return c.flushLocked()
	}
	return nil
}

// Hold delays writing buffered frames to the socket until release is
// called, so a writer that sends several frames in a row (the events of a
// short stream) pays one write(2) for all of them instead of one each.
// Frames of other writers wait in the buffer as well, and the buffer still
// goes out whenever it fills, so a hold never blocks anyone for longer than
// the holder takes. release must be called exactly once.
func (c *Conn) Hold() (release func() error) {
	c.wwait.Add(1)
	return func() error {
		if c.wwait.Add(-1) != 0 {
			return nil // another writer in flight flushes when it is done
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if err := c.fatal(); err != nil {
			return err
		}
		return c.flushLocked()
	}
}

// flushLocked writes buffered frames to the socket.
// REQUIRES: c.wmu held.
func (c *Conn) flushLocked() error {
	if err := c.bw.Flush(); err != nil {
		return c.fail(fmt.Errorf("wire: write frame: %w", err))
	}
	return nil
}

// writeLocked encrypts and sends f.
// REQUIRES: c.wmu held; c not dead.
func (c *Conn) writeLocked(f Frame, parts [][]byte, size int) error {
	if c.send.Nonce() >= noise.MaxNonce && f.Flags != FlagClose {
		// Keep the last nonce for the CLOSE frame, so even an exhausted
		// session ends with an authenticated CLOSE.
		c.wdone = fmt.Errorf("%w: send side", ErrNonceExhausted)
		return c.wdone
	}
	if need := LengthSize + FrameHeaderSize + size + TagSize; cap(c.wbuf) < need {
		c.wbuf = make([]byte, 0, need)
	}
	b := append(c.wbuf[:0], 0, 0)
	b, err := AppendFrame(b, f)
	if err != nil {
		return err
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	// Encrypt in place: the ciphertext overwrites the plaintext at b[2:].
	b, err = c.send.Encrypt(b[:LengthSize], nil, b[LengthSize:])
	if err != nil {
		if errors.Is(err, noise.ErrMaxNonce) {
			c.wdone = fmt.Errorf("%w: send side", ErrNonceExhausted)
			return c.wdone
		}
		return c.fail(fmt.Errorf("wire: encrypt frame: %w", err))
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-LengthSize))
	c.wbuf = b[:0]
	if _, err := c.bw.Write(b); err != nil {
		return c.fail(fmt.Errorf("wire: write frame: %w", err))
	}
	c.nsent++
	if c.nsent%c.rekey == 0 {
		c.send.Rekey()
	}
	return nil
}

// Close ends the session: it sends a CLOSE frame (best effort, waiting at
// most a second) and closes the net.Conn. Blocked ReadFrame and WriteFrame
// calls return ErrClosed. Close is idempotent and safe to call concurrently
// with everything else; it returns the error of closing the net.Conn, or
// nil if c had already died.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.state.Lock()
		c.state.closing = true
		dead := c.state.err != nil
		c.state.Unlock()
		if dead {
			return
		}
		// Unblock a writer stuck on a peer that does not read; its
		// failure kills c, and then no CLOSE is sent after its partial
		// frame.
		c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
		c.wmu.Lock()
		if c.fatal() == nil {
			if c.writeLocked(Frame{Flags: FlagClose}, nil, 0) == nil {
				c.flushLocked()
			}
		}
		c.wdone = ErrClosed
		c.wmu.Unlock()

		c.state.Lock()
		defer c.state.Unlock()
		if c.state.err == nil {
			c.state.err = ErrClosed
			c.closeErr = c.nc.Close()
		}
	})
	return c.closeErr
}
