package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
)

// writeTimeout bounds one frame write to dbd.
const writeTimeout = 30 * time.Second

// session is one connection. Its readLoop goroutine owns the reassembly
// buffers; calls are registered under mu.
type session struct {
	wc        *wire.Conn
	maxAnswer int
	frames    *framePool // the Client's: buffers readLoop decrypts into

	streams   int       // open streams; guarded by the Client's mu
	busyUntil time.Time // no new streams before (dbd said busy); guarded by the Client's mu
	// paced: the session carries streams read at their caller's pace
	// (usePaced) and nothing else (see Client). Set before the session
	// is added to the Client's, under its mu, and never changed.
	paced bool

	mu    sync.Mutex
	calls map[uint32]*call
	err   error         // why the session died
	done  chan struct{} // closed when the session is dead
}

func newSession(wc *wire.Conn, maxAnswer int, frames *framePool) *session {
	return &session{wc: wc, maxAnswer: maxAnswer, frames: frames, calls: map[uint32]*call{}, done: make(chan struct{})}
}

func (s *session) dead() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill ends the session with err (once) and closes the connection.
func (s *session) kill(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
	s.mu.Unlock()
	s.wc.Close()
}

func (s *session) lostErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return ErrClosed
	}
	if errors.Is(s.err, ErrAnswerTooLarge) {
		// This package's sentinel stays findable with errors.Is. Other
		// causes stay text only: a caller's errors.As(err, &net.Error)
		// must not take a lost dbd connection for its own timeout.
		return fmt.Errorf("%w: %w", ErrConnLost, s.err)
	}
	return fmt.Errorf("%w: %v", ErrConnLost, s.err)
}

// call is one request in flight; ch receives its answer messages. gone is
// closed when the caller unregisters the call, so the read loop never waits
// on a full ch that nobody will read again (that would stall every other
// call on the connection).
type call struct {
	s        *session
	id       uint32
	ch       chan answer
	gone     chan struct{}
	goneOnce sync.Once
	release  func() // a stream's slot on its connection, or nil

	// keepFrames makes next note the pool buffers of the messages it
	// returns in frames, for the caller to give back once nothing uses
	// them (MailsRowsPooled). Without it they are the caller's, as any
	// answer is. Both are the caller's goroutine's.
	keepFrames bool
	frames     []*[]byte

	// handle, if not nil, is offered each answer message in the read
	// loop itself; a message it takes (true) is not queued for next.
	// Set before the call is registered; see Client.WatchWhereFunc.
	handle func(msg []byte) bool
}

// answer is one answer message and the pool buffer it lies in (nil: it
// is memory of its own).
type answer struct {
	msg   []byte
	frame *[]byte
}

// unregister marks the call gone, once, and gives back its stream slot.
func (cl *call) unregister() {
	cl.goneOnce.Do(func() {
		close(cl.gone)
		if cl.release != nil {
			cl.release()
		}
	})
}

// start registers a call under an id from newID and sends its request
// frames. The request is the concatenation of parts (see send).
// release, if not nil, is called once when the call ends (also when start
// fails).
func (s *session) start(ctx context.Context, newID func() uint32, parts [][]byte, buf int, release func()) (*call, error) {
	return s.startHandled(ctx, newID, parts, buf, release, nil)
}

// startHandled is start with the call's handle (see call).
func (s *session) startHandled(ctx context.Context, newID func() uint32, parts [][]byte, buf int, release func(), handle func([]byte) bool) (*call, error) {
	cl := &call{s: s, ch: make(chan answer, buf), gone: make(chan struct{}), release: release, handle: handle}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		cl.unregister()
		return nil, s.lostErr()
	}
	// The ids come round again after 2^32 requests, days on a busy
	// connection that still carries a watch opened at its start: an id in
	// flight here is skipped. Reused, it would hand that request's answers
	// to the new call, and dbd ends a connection that reuses an id in
	// flight (docs/wire.md §5.1).
	cl.id = newID()
	for s.calls[cl.id] != nil {
		cl.id = newID()
	}
	s.calls[cl.id] = cl
	s.mu.Unlock()
	if err := s.send(cl.id, parts); err != nil {
		cl.close()
		return nil, err
	}
	return cl, nil
}

// send writes the message made of parts, in order, as frames. Frames of
// different requests may interleave. A frame that lies within one part is
// that part's bytes, not a copy; only a frame that spans parts is
// assembled. So a merge of a 50 MiB body is sent from the row's own content
// without building the whole message (see Client.Merge).
func (s *session) send(id uint32, parts [][]byte) error {
	max := s.wc.MaxFrameData()
	remaining := 0
	for _, p := range parts {
		remaining += len(p)
	}
	pi, off := 0, 0
	for {
		for pi < len(parts) && off == len(parts[pi]) {
			pi, off = pi+1, 0
		}
		n := min(remaining, max)
		var data []byte
		var pieces [][]byte // the frame's data when it spans parts
		if n > 0 && len(parts[pi])-off >= n {
			data = parts[pi][off : off+n]
			off += n
		} else if n > 0 {
			pieces = make([][]byte, 0, len(parts)-pi)
			for got := 0; got < n; {
				for off == len(parts[pi]) {
					pi, off = pi+1, 0
				}
				take := min(n-got, len(parts[pi])-off)
				pieces = append(pieces, parts[pi][off:off+take])
				off += take
				got += take
			}
		}
		remaining -= n
		f := wire.Frame{ReqID: id, Data: data}
		if remaining > 0 {
			f.Flags = wire.FlagMore
		}
		if err := s.writeFrame(f, pieces); err != nil {
			return err
		}
		if remaining == 0 {
			return nil
		}
	}
}

// writeFrame writes one frame with a deadline. No lock of its own:
// wire.Conn serialises writers and combines concurrent ones into one
// write(2), which an outer lock would defeat.
// writeFrame writes f, whose data is f.Data followed by parts.
func (s *session) writeFrame(f wire.Frame, parts [][]byte) error {
	s.wc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.wc.WriteFrameParts(f, parts); err != nil {
		s.kill(err)
		return s.lostErr()
	}
	return nil
}

// next waits for the call's next answer message.
func (cl *call) next(ctx context.Context) ([]byte, error) {
	select {
	case a := <-cl.ch:
		return cl.took(a), nil
	default:
	}
	select {
	case a := <-cl.ch:
		return cl.took(a), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-cl.s.done:
		// Deliver answers that arrived before the connection died.
		select {
		case a := <-cl.ch:
			return cl.took(a), nil
		default:
		}
		return nil, cl.s.lostErr()
	}
}

// took notes a's pool buffer if the caller gives them back.
func (cl *call) took(a answer) []byte {
	if cl.keepFrames && a.frame != nil {
		cl.frames = append(cl.frames, a.frame)
	}
	return a.msg
}

// close unregisters the call; if dbd may still be working on it, a cancel
// frame tells it to stop.
func (cl *call) close() {
	s := cl.s
	cl.unregister()
	s.mu.Lock()
	_, live := s.calls[cl.id]
	delete(s.calls, cl.id)
	dead := s.err != nil
	s.mu.Unlock()
	if live && !dead {
		s.writeFrame(wire.Frame{Flags: wire.FlagCancel, ReqID: cl.id}, nil)
	}
}

// finish unregisters a call whose answer is complete (no cancel needed).
func (cl *call) finish() {
	cl.unregister()
	cl.s.mu.Lock()
	delete(cl.s.calls, cl.id)
	cl.s.mu.Unlock()
}

// readLoop reads frames, reassembles messages by request id and hands each
// complete message to its call. It ends the session on any error.
//
// Frames are decrypted into buffers of the Client's pool. A message of
// one large frame is handed on in its buffer, which the caller may give
// back (MailsRowsPooled: the packed rows of op mails fill frames, and a
// fresh 64 KiB allocation each was most of what a FETCH allocated); a
// frame under half a buffer is copied out and its buffer kept, so that an
// answer held long (a watch event, a row found) holds at most twice its
// size; the frames of a message of several are joined and their buffers
// kept.
func (s *session) readLoop() {
	// A message's frames are kept as they arrive and joined once at its
	// end, so a 50 MiB answer costs two copies at most, not a chain of
	// ever larger buffers.
	type parts struct {
		frames [][]byte
		bufs   []*[]byte // the pool buffers of frames
		size   int
	}
	pending := map[uint32]*parts{}
	for {
		fb := s.frames.get()
		f, err := s.wc.ReadFrameTo(*fb)
		if err != nil {
			s.frames.put(fb)
			if errors.Is(err, io.EOF) {
				err = errors.New("dbd closed the connection")
			}
			s.kill(err)
			return
		}
		if len(f.Data) < pooledFrameMin {
			f.Data = bytes.Clone(f.Data)
			s.frames.put(fb)
			fb = nil
		}
		p := pending[f.ReqID]
		if p == nil && f.Flags&wire.FlagMore != 0 {
			p = &parts{}
			pending[f.ReqID] = p
		}
		a := answer{msg: f.Data, frame: fb}
		if p != nil {
			p.frames = append(p.frames, f.Data)
			if fb != nil {
				p.bufs = append(p.bufs, fb)
			}
			p.size += len(f.Data)
			if p.size > s.maxAnswer {
				s.kill(ErrAnswerTooLarge)
				return
			}
			if f.Flags&wire.FlagMore != 0 {
				continue
			}
			buf := make([]byte, 0, p.size)
			for _, fr := range p.frames {
				buf = append(buf, fr...)
			}
			for _, b := range p.bufs {
				s.frames.put(b)
			}
			delete(pending, f.ReqID)
			a = answer{msg: buf}
		}
		s.mu.Lock()
		cl := s.calls[f.ReqID]
		s.mu.Unlock()
		if cl == nil {
			s.frames.put(a.frame) // answer to a cancelled call
			continue
		}
		if cl.handle != nil && cl.handle(a.msg) {
			// Taken in place (a watch event: a goroutine hand-over
			// saved). What was decoded from it may alias its buffer, so
			// a pooled one is left to the garbage collector.
			continue
		}
		// A full ch makes this wait, and every answer behind it on the
		// connection: back-pressure for a stream read with Next, which
		// the Client keeps off the connections of one-shot requests (see
		// Client).
		select {
		case cl.ch <- a:
		case <-cl.gone: // the caller closed the call: drop the answer
			s.frames.put(a.frame)
		case <-s.done:
			return
		}
	}
}

// pooledFrameMin is the smallest frame handed on in its pool buffer: half
// of one.
const pooledFrameMin = (wire.MaxFrameData + wire.FrameHeaderSize) / 2

// framePool holds buffers for decrypted frames, each large enough for any
// frame (wire.Conn.ReadFrameTo). It is safe for concurrent use.
type framePool struct{ p sync.Pool }

func (fp *framePool) get() *[]byte {
	if b, ok := fp.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, wire.MaxFrameData+wire.FrameHeaderSize)
	return &b
}

// put gives b back; nil is ignored. Nothing may use b's memory after.
func (fp *framePool) put(b *[]byte) {
	if b != nil {
		fp.p.Put(b)
	}
}
