package client

import (
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

	streams   int       // open streams; guarded by the Client's mu
	busyUntil time.Time // no new streams before (dbd said busy); guarded by the Client's mu

	mu    sync.Mutex
	calls map[uint32]*call
	err   error         // why the session died
	done  chan struct{} // closed when the session is dead
}

func newSession(wc *wire.Conn, maxAnswer int) *session {
	return &session{wc: wc, maxAnswer: maxAnswer, calls: map[uint32]*call{}, done: make(chan struct{})}
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
	return fmt.Errorf("%w: %v", ErrConnLost, s.err)
}

// call is one request in flight; ch receives its answer messages. gone is
// closed when the caller unregisters the call, so the read loop never waits
// on a full ch that nobody will read again (that would stall every other
// call on the connection).
type call struct {
	s        *session
	id       uint32
	ch       chan []byte
	gone     chan struct{}
	goneOnce sync.Once
	release  func() // a stream's slot on its connection, or nil
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

// start registers a call and sends its request frames. The request is the
// concatenation of parts (see send).
// release, if not nil, is called once when the call ends (also when start
// fails).
func (s *session) start(ctx context.Context, id uint32, parts [][]byte, buf int, release func()) (*call, error) {
	cl := &call{s: s, id: id, ch: make(chan []byte, buf), gone: make(chan struct{}), release: release}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		cl.unregister()
		return nil, s.lostErr()
	}
	s.calls[id] = cl
	s.mu.Unlock()
	if err := s.send(id, parts); err != nil {
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
	case m := <-cl.ch:
		return m, nil
	default:
	}
	select {
	case m := <-cl.ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-cl.s.done:
		// Deliver answers that arrived before the connection died.
		select {
		case m := <-cl.ch:
			return m, nil
		default:
		}
		return nil, cl.s.lostErr()
	}
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
func (s *session) readLoop() {
	// A message's frames are kept as they arrive (ReadFrame hands over
	// ownership) and joined once at its end, so a 50 MiB answer costs two
	// copies at most, not a chain of ever larger buffers.
	type parts struct {
		frames [][]byte
		size   int
	}
	pending := map[uint32]*parts{}
	for {
		f, err := s.wc.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("dbd closed the connection")
			}
			s.kill(err)
			return
		}
		p := pending[f.ReqID]
		if p == nil && f.Flags&wire.FlagMore != 0 {
			p = &parts{}
			pending[f.ReqID] = p
		}
		var buf []byte
		if p == nil {
			buf = f.Data
		} else {
			p.frames = append(p.frames, f.Data)
			p.size += len(f.Data)
			if p.size > s.maxAnswer {
				s.kill(ErrAnswerTooLarge)
				return
			}
			if f.Flags&wire.FlagMore != 0 {
				continue
			}
			buf = make([]byte, 0, p.size)
			for _, fr := range p.frames {
				buf = append(buf, fr...)
			}
			delete(pending, f.ReqID)
		}
		s.mu.Lock()
		cl := s.calls[f.ReqID]
		s.mu.Unlock()
		if cl == nil {
			continue // answer to a cancelled call
		}
		select {
		case cl.ch <- buf:
		case <-cl.gone: // the caller closed the call: drop the answer
		case <-s.done:
			return
		}
	}
}
