package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// How a truncating server ends the connection.
type ending int

const (
	endFIN   ending = iota // TCP close, no CLOSE frame
	endRST                 // TCP reset
	endCLOSE               // authenticated CLOSE frame: a clean end of session, mid-answer
)

func (e ending) String() string { return [...]string{"TCP close", "reset", "CLOSE"}[e] }

// cut says where a truncating server stops sending an answer's frames.
type cut int

const (
	cutAfterFirst cut = iota // the first frame only
	cutLastFrame             // every frame but the last
	cutLastMore              // every frame, the last one with MORE: every byte, no end
	cutMidLast               // every frame but the last, then half of the last
)

func (c cut) String() string {
	return [...]string{"after the first frame", "without the last frame", "every byte, no end", "the last frame cut mid-frame"}[c]
}

// truncDBD is a wire server that answers every request with the messages
// answer returns, each cut into frames of at most step bytes, and on the
// connections for which trunc is true stops at where and ends the
// connection with end.
type truncDBD struct {
	ln      net.Listener
	key     wire.KeyPair
	accepts atomic.Int64
	wg      sync.WaitGroup

	answer func(req *wire.Request) [][]byte
	step   int
	trunc  func(conn int64) bool
	where  cut
	end    ending
}

func startTruncDBD(t *testing.T, d *truncDBD) *truncDBD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.ln = ln
	d.key, _ = wire.GenerateKeyPair(rand.Reader)
	replay := wire.NewReplayCache(4*time.Minute, 1000)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n := d.accepts.Add(1)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.serve(n, nc.(*net.TCPConn), replay)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

func (d *truncDBD) serve(n int64, nc *net.TCPConn, replay *wire.ReplayCache) {
	defer nc.Close()
	cc := &budgetConn{TCPConn: nc, budget: -1}
	wc, err := wire.ServerHandshake(context.Background(), cc, &wire.ServerConfig{
		Static: d.key, Authorize: func(wire.PublicKey) error { return nil }, Replay: replay,
	})
	if err != nil {
		return
	}
	for {
		fr, err := wc.ReadFrame()
		if err != nil {
			wc.Close()
			return
		}
		if fr.Flags&wire.FlagCancel != 0 {
			continue
		}
		req, err := wire.DecodeRequest(fr.Data)
		if err != nil {
			return
		}
		var frames []wire.Frame
		for _, msg := range d.answer(req) {
			for len(msg) > d.step {
				frames = append(frames, wire.Frame{Flags: wire.FlagMore, ReqID: fr.ReqID, Data: msg[:d.step]})
				msg = msg[d.step:]
			}
			frames = append(frames, wire.Frame{ReqID: fr.ReqID, Data: msg})
		}
		if !d.trunc(n) {
			for _, f := range frames {
				if wc.WriteFrame(f) != nil {
					return
				}
			}
			continue
		}
		// From here the connection ends without wc.Close (no CLOSE
		// frame) unless end says otherwise.
		if d.end == endRST {
			nc.SetLinger(0)
		}
		last := len(frames) - 1
		final := frames[last]
		switch d.where {
		case cutAfterFirst:
			frames = frames[:1]
		case cutLastFrame, cutMidLast:
			frames = frames[:last]
		case cutLastMore:
			frames[last].Flags |= wire.FlagMore
		}
		for _, f := range frames {
			if wc.WriteFrame(f) != nil {
				return
			}
		}
		if d.where == cutMidLast {
			// The length prefix and half of the ciphertext.
			cc.mu.Lock()
			cc.budget = int64(wire.LengthSize + (wire.FrameHeaderSize+len(final.Data)+wire.TagSize)/2)
			cc.mu.Unlock()
			wc.WriteFrame(final)
		}
		if d.end == endCLOSE {
			wc.Close()
		}
		return // the deferred nc.Close sends a FIN, or a reset
	}
}

// budgetConn stops writing once budget (if not negative) bytes are
// written.
type budgetConn struct {
	*net.TCPConn
	mu     sync.Mutex
	budget int64
}

func (c *budgetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.budget < 0 {
		return c.TCPConn.Write(p)
	}
	n, err := c.TCPConn.Write(p[:min(int64(len(p)), c.budget)])
	c.budget -= int64(n)
	if err == nil && n < len(p) {
		err = errors.New("test: write budget spent")
	}
	return n, err
}

// TestTruncatedAnswerIsAnError (TEST-CATALOG item 64, client side): when
// the connection ends in the middle of an answer — a one-shot answer in
// several frames, or a stream before its end message — by a TCP close, a
// reset or even an authenticated CLOSE, the caller gets ErrConnLost:
// never an empty or partial success, never a short row list as if
// complete. Increment is not retried, so its error reaches the caller;
// List and Scan streams are not retried either.
func TestTruncatedAnswerIsAnError(t *testing.T) {
	parent := model.KeyOf(model.Mailbox, []byte("box"))
	rows := []wire.Row{
		{Table: model.Receive, Key: model.KeyOf(model.Receive, []byte("1")), RowNo: 1, HasContent: true, Content: []byte("first")},
		{Table: model.Receive, Key: model.KeyOf(model.Receive, []byte("2")), RowNo: 2, HasContent: true, Content: []byte("second")},
		{Table: model.Receive, Key: model.KeyOf(model.Receive, []byte("3")), RowNo: 3, HasContent: true, Content: []byte("third")},
	}
	answer := func(req *wire.Request) [][]byte {
		switch req.Op {
		case wire.OpList, wire.OpScan:
			var msgs [][]byte
			for i := range rows {
				msgs = append(msgs, wire.AppendRow(wire.AppendEventHeader(nil), &rows[i]))
			}
			return append(msgs, wire.AppendEnd(nil))
		default:
			return [][]byte{wire.AppendResult(nil, req.Op, &wire.Result{RowNo: 7})}
		}
	}
	always := func(int64) bool { return true }
	for _, where := range []cut{cutAfterFirst, cutLastFrame, cutLastMore, cutMidLast} {
		for _, end := range []ending{endFIN, endRST, endCLOSE} {
			if where == cutMidLast && end == endCLOSE {
				continue // a cut frame leaves no room for a CLOSE
			}
			name := where.String() + ", " + end.String()
			t.Run(name, func(t *testing.T) {
				d := startTruncDBD(t, &truncDBD{answer: answer, step: 1, trunc: always, where: where, end: end})
				c := newTestClient(t, d.ln.Addr().String(), d.key.Public, nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()

				no, err := c.Increment(ctx, model.Text, wire.Ref{Content: []byte("x")}, "hits", 1)
				if !errors.Is(err, ErrConnLost) {
					t.Errorf("increment = %d, %v; want ErrConnLost", no, err)
				}
				got, err := c.List(ctx, model.Receive, parent, 0, 10)
				if !errors.Is(err, ErrConnLost) || got != nil {
					t.Errorf("list = %d rows, %v; want no rows and ErrConnLost", len(got), err)
				}
				st, err := c.Scan(ctx, model.Receive, 10)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				var n int
				for {
					_, err = st.Next(ctx)
					if err != nil {
						break
					}
					n++
				}
				if !errors.Is(err, ErrConnLost) || n > len(rows) {
					t.Errorf("scan stream: %d rows, then %v; want at most %d rows, then ErrConnLost", n, err, len(rows))
				}
				if _, err := st.Next(ctx); errors.Is(err, io.EOF) {
					t.Errorf("scan stream: io.EOF after the connection was lost")
				}
				if d.accepts.Load() < 3 {
					t.Errorf("%d connections for three requests each on a connection that died", d.accepts.Load())
				}
			})
		}
	}
}

// TestTruncatedAnswerRetried: an idempotent request whose answer — a row
// of 200 kB, four frames — is cut short is sent again on a new connection,
// and the caller gets the whole row from there, never the part that came
// before the cut.
func TestTruncatedAnswerRetried(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 20000)
	row := wire.Row{Table: model.Body, Key: model.KeyOf(model.Body, content), RowNo: 1, HasContent: true, Content: content}
	for _, where := range []cut{cutAfterFirst, cutLastFrame, cutLastMore, cutMidLast} {
		t.Run(where.String(), func(t *testing.T) {
			d := startTruncDBD(t, &truncDBD{
				answer: func(*wire.Request) [][]byte {
					return [][]byte{wire.AppendResult(nil, wire.OpFind, &wire.Result{Row: &row})}
				},
				step:  wire.MaxFrameData,
				trunc: func(conn int64) bool { return conn == 1 },
				where: where,
				end:   endFIN,
			})
			c := newTestClient(t, d.ln.Addr().String(), d.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := c.FindKey(ctx, model.Body, row.Key)
			if err != nil || !bytes.Equal(got.Content, content) {
				n := -1
				if got != nil {
					n = len(got.Content)
				}
				t.Fatalf("find = %d content bytes, %v; want the whole %d", n, err, len(content))
			}
			if n := d.accepts.Load(); n != 2 {
				t.Fatalf("%d connections, want 2 (the cut one and the retry)", n)
			}
		})
	}
}

// TestAnswerTooLarge: an answer over Config.MaxAnswer drops the
// connection, and the request it answered fails with an error that
// errors.Is finds both ErrConnLost and ErrAnswerTooLarge in (the second
// was lost in the error's text).
func TestAnswerTooLarge(t *testing.T) {
	parent := model.KeyOf(model.Mailbox, []byte("box"))
	row := wire.Row{Table: model.Receive, Key: model.KeyOf(model.Receive, []byte("1")), RowNo: 1, HasContent: true, Content: bytes.Repeat([]byte("x"), 1000)}
	d := startTruncDBD(t, &truncDBD{
		answer: func(*wire.Request) [][]byte {
			return [][]byte{wire.AppendRow(wire.AppendEventHeader(nil), &row), wire.AppendEnd(nil)}
		},
		step:  100,
		trunc: func(int64) bool { return false },
	})
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := New(Config{Addr: d.ln.Addr().String(), Static: kp, Server: d.key.Public, MaxAnswer: 500,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.List(ctx, model.Receive, parent, 0, 10)
	if !errors.Is(err, ErrAnswerTooLarge) || !errors.Is(err, ErrConnLost) {
		t.Fatalf("list = %d rows, %v; want ErrConnLost and ErrAnswerTooLarge", len(rows), err)
	}
}
