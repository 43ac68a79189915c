package client

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// fakeDBD is a minimal wire server for client tests: it answers ping and
// increment with an empty or row-number result, and drops the connection
// after each request when drop is set (before answering).
type fakeDBD struct {
	ln       net.Listener
	key      wire.KeyPair
	drop     atomic.Bool
	received atomic.Int64 // requests received, answered or not
	busy     atomic.Int64 // watches still to refuse as busy
	accepts  atomic.Int64
	// mails, if set, answers a mails or list request: the answer
	// messages, each sent as one frame.
	mails func(req *wire.Request) [][]byte
	// refuseWatch, if set, is asked about each watch request: true
	// answers it bad-request (as a dbd that does not know its fields).
	refuseWatch func(req *wire.Request) bool
	// onReceive, if set, is called after each request is counted.
	onReceive atomic.Pointer[func()]
	wg        sync.WaitGroup
}

func newFakeDBD(t *testing.T) *fakeDBD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	f := &fakeDBD{ln: ln, key: kp}
	replay := wire.NewReplayCache(4*time.Minute, 1000)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer nc.Close()
				wc, err := wire.ServerHandshake(context.Background(), nc, &wire.ServerConfig{
					Static: kp, Authorize: func(wire.PublicKey) error { return nil }, Replay: replay,
				})
				if err != nil {
					return
				}
				defer wc.Close()
				for {
					fr, err := wc.ReadFrame()
					if err != nil {
						return
					}
					if fr.Flags&wire.FlagCancel != 0 {
						continue // a closed stream; its events stop mattering
					}
					req, err := wire.DecodeRequest(fr.Data)
					if err != nil {
						return
					}
					f.received.Add(1)
					if fn := f.onReceive.Load(); fn != nil {
						(*fn)()
					}
					if f.drop.Load() {
						nc.Close()
						return
					}
					if (req.Op == wire.OpMails || req.Op == wire.OpList) && f.mails != nil {
						for _, ans := range f.mails(req) {
							if err := wc.WriteFrame(wire.Frame{ReqID: fr.ReqID, Data: ans}); err != nil {
								return
							}
						}
						continue
					}
					if req.Op == wire.OpWatch && f.refuseWatch != nil && f.refuseWatch(req) {
						if err := wc.WriteFrame(wire.Frame{ReqID: fr.ReqID, Data: wire.AppendError(nil, wire.CodeBadRequest, "wire: malformed message: watch: unknown flags")}); err != nil {
							return
						}
						continue
					}
					if req.Op == wire.OpWatch && f.busy.Add(-1) >= 0 {
						if err := wc.WriteFrame(wire.Frame{ReqID: fr.ReqID, Data: wire.AppendError(nil, wire.CodeBusy, "too many open streams")}); err != nil {
							return
						}
						continue
					}
					if req.Op == wire.OpWatch {
						// Subscribed, then a burst of events nobody may read.
						ans := wire.AppendResult(nil, wire.OpPing, &wire.Result{})
						for i := 0; i <= watchBurst; i++ {
							if err := wc.WriteFrame(wire.Frame{ReqID: fr.ReqID, Data: ans}); err != nil {
								return
							}
							ans = wire.AppendRow(wire.AppendEventHeader(nil), &wire.Row{Table: req.Table, RowNo: uint64(i)})
						}
						continue
					}
					ans := wire.AppendResult(nil, req.Op, &wire.Result{RowNo: 1})
					if err := wc.WriteFrame(wire.Frame{ReqID: fr.ReqID, Data: ans}); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func newTestClient(t *testing.T, addr string, server wire.PublicKey, dial func(context.Context, string) (net.Conn, error)) *Client {
	t.Helper()
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := New(Config{Addr: addr, Static: kp, Server: server, MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond, Dial: dial, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
}

// TestBackoffAfterFailedDials: while dbd is unreachable, the client dials
// with growing waits (not in a tight loop) and succeeds once dbd is back.
func TestBackoffAfterFailedDials(t *testing.T) {
	f := newFakeDBD(t)
	var dials atomic.Int64
	var reachable atomic.Bool
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		if !reachable.Load() {
			return nil, errors.New("connection refused (test)")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, dial)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping succeeded while dbd was unreachable")
	}
	// 300 ms with waits of 5, 10, 20, 40, 40... ms (jittered to half at
	// least): far fewer than a tight loop would make.
	if n := dials.Load(); n < 2 || n > 40 {
		t.Fatalf("%d dials in 300 ms; want backoff between 2 and 40", n)
	}
	reachable.Store(true)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping after dbd became reachable: %v", err)
	}
}

// TestIdempotentRetried: a ping whose connection breaks is retried on a new
// connection; an increment is not (it may have been applied) and reports
// ErrConnLost.
func TestIdempotentRetried(t *testing.T) {
	f := newFakeDBD(t)
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.drop.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	before := f.received.Load()
	_, err := c.Increment(ctx, model.Text, wire.Ref{Content: []byte("x")}, "n", 1)
	if !errors.Is(err, ErrConnLost) {
		t.Fatalf("increment on a dropped connection: %v, want ErrConnLost", err)
	}
	if got := f.received.Load() - before; got != 1 {
		t.Fatalf("increment was sent %d times, want exactly once", got)
	}
	// A ping is retried: with every connection dropped it keeps trying
	// until its ctx ends, here when dbd has seen it twice. (A fixed
	// 200 ms was too short for two handshakes on a loaded machine in 386
	// builds; a long one fills the fake's replay cache.)
	before = f.received.Load()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	seenTwice := func() {
		if f.received.Load()-before >= 2 {
			pcancel()
		}
	}
	f.onReceive.Store(&seenTwice)
	err = c.Ping(pctx)
	f.onReceive.Store(nil)
	if err == nil {
		t.Fatal("ping succeeded though every connection was dropped")
	}
	if got := f.received.Load() - before; got < 2 {
		t.Fatalf("ping was sent %d times, want retries", got)
	}
	f.drop.Store(false)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping once dbd answers again: %v", err)
	}
}

// TestWrongServerKey: a client pinning another key than dbd's never
// completes a request.
func TestWrongServerKey(t *testing.T) {
	f := newFakeDBD(t)
	other, _ := wire.GenerateKeyPair(rand.Reader)
	c := newTestClient(t, f.ln.Addr().String(), other.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping succeeded against a server with another key")
	}
}

// TestManyInFlight: many concurrent requests share one connection.
// fakeClient returns a client of f configured by cfg (address and keys
// filled in), closed when the test ends, and a 5 s context.
func fakeClient(t *testing.T, f *fakeDBD, cfg Config) (*Client, context.Context) {
	t.Helper()
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	cfg.Addr, cfg.Static, cfg.Server = f.ln.Addr().String(), kp, f.key.Public
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c, ctx
}

// watchBurst is how many events the fake dbd sends on a watch.
const watchBurst = 64

// TestClosedStreamDoesNotStallConnection: a watch whose events fill its
// buffer and is then closed unread must not block the connection's reader,
// or every other request on it would hang.
func TestClosedStreamDoesNotStallConnection(t *testing.T) {
	f := newFakeDBD(t)
	c, ctx := fakeClient(t, f, Config{StreamBuffer: 2})
	st, err := c.Watch(ctx, model.Receive, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the burst fill the buffer
	st.Close()
	for i := 0; i < 3; i++ {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping %d after closing a full stream: %v", i, err)
		}
	}
}

func TestManyInFlight(t *testing.T) {
	f := newFakeDBD(t)
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := c.Ping(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := f.accepts.Load(); n != 1 {
		t.Fatalf("%d connections for 1280 requests, want 1", n)
	}
}

// TestClosed: requests after Close fail with ErrClosed.
func TestClosed(t *testing.T) {
	f := newFakeDBD(t)
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after Close: %v, want ErrClosed", err)
	}
}

// TestStreamsSpreadOverConnections: streams beyond StreamsPerConn open a
// further connection; a freed slot is used again before a new one is
// opened; one-shot requests keep using their own connection, which
// streams read with Next never share (TestUnreadStreamDoesNotStallRequests).
func TestStreamsSpreadOverConnections(t *testing.T) {
	f := newFakeDBD(t)
	c, ctx := fakeClient(t, f, Config{StreamsPerConn: 2, StreamBuffer: 2 * watchBurst})
	if err := c.Ping(ctx); err != nil { // the connection for requests
		t.Fatal(err)
	}
	var open []*Stream
	watch := func() {
		t.Helper()
		st, err := c.Watch(ctx, model.Receive, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, st)
	}
	for range 5 {
		watch()
	}
	if n := f.accepts.Load(); n != 1+3 {
		t.Fatalf("5 streams at 2 a connection used %d connections with the requests', want 4", n)
	}
	open[0].Close()
	open[3].Close()
	watch()
	watch()
	if n := f.accepts.Load(); n != 1+3 {
		t.Fatalf("after two streams ended, two more used %d connections in all, want 4", n)
	}
	watch() // the 6th open stream fills the third connection
	watch()
	if n := f.accepts.Load(); n != 1+4 {
		t.Fatalf("the 7th open stream used %d connections in all, want 5", n)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.accepts.Load(); n != 1+4 {
		t.Fatalf("a ping opened a connection (%d in all)", n)
	}
	for _, st := range open {
		st.Close()
	}
}

// TestBusyStreamTriedElsewhere: a stream dbd refuses as busy (its count of
// the connection's streams lags ours) is opened on another connection.
func TestBusyStreamTriedElsewhere(t *testing.T) {
	f := newFakeDBD(t)
	f.busy.Store(1)
	c, ctx := fakeClient(t, f, Config{StreamBuffer: 2 * watchBurst})
	st, err := c.Watch(ctx, model.Receive, nil, false)
	if err != nil {
		t.Fatalf("watch refused once as busy: %v", err)
	}
	defer st.Close()
	if n := f.accepts.Load(); n != 2 {
		t.Fatalf("the retry used %d connections in all, want 2", n)
	}
	f.busy.Store(busyRetries + 10)
	if _, err := c.Watch(ctx, model.Receive, nil, false); err == nil {
		t.Fatal("a watch refused every time succeeded")
	}
}

// TestOneConnection: a client made with OneConnection never dials again
// once its connection is lost; requests, even idempotent ones, and streams
// fail with ErrConnLost, while dbd would accept a new connection.
func TestOneConnection(t *testing.T) {
	f := newFakeDBD(t)
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := New(Config{Addr: f.ln.Addr().String(), Static: kp, Server: f.key.Public, OneConnection: true,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	f.drop.Store(true)
	if err := c.Ping(ctx); !errors.Is(err, ErrConnLost) {
		t.Fatalf("ping on the dropped connection: %v, want ErrConnLost", err)
	}
	f.drop.Store(false)
	if err := c.Ping(ctx); !errors.Is(err, ErrConnLost) {
		t.Fatalf("ping after the connection was lost: %v, want ErrConnLost", err)
	}
	if _, err := c.Watch(ctx, model.Text, nil, false); !errors.Is(err, ErrConnLost) {
		t.Fatalf("stream after the connection was lost: %v, want ErrConnLost", err)
	}
	if n := f.accepts.Load(); n != 1 {
		t.Fatalf("%d connections accepted, want 1", n)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("requests waited for their ctx instead of failing: %v", err)
	}
}

// TestWatchWhere: WatchWhere sends its condition; a dbd older than watch
// conditions refuses it as bad-request, and the Client watches without
// it, and keeps doing so until a new connection.
func TestWatchWhere(t *testing.T) {
	for _, tc := range []struct {
		name  string
		older bool
		asked []bool
	}{
		{"conditions known", false, []bool{true, true}},
		{"older dbd", true, []bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDBD(t)
			var mu sync.Mutex
			var asked []bool
			f.refuseWatch = func(req *wire.Request) bool {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, req.Cond != nil)
				if req.Cond != nil && *req.Cond != (wire.WatchCond{With: "verdict", Without: "ack"}) {
					t.Errorf("condition %+v sent", *req.Cond)
				}
				return req.Cond != nil && tc.older
			}
			c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 2 {
				st, err := c.WatchWhere(ctx, model.Receive, wire.WatchCond{With: "verdict", Without: "ack"})
				if err != nil {
					t.Fatalf("WatchWhere #%d: %v", i+1, err)
				}
				st.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if !reflect.DeepEqual(asked, tc.asked) {
				t.Fatalf("watches with a condition: %v, want %v", asked, tc.asked)
			}
		})
	}
}

// TestWatchWhereFunc: the events reach f in order, in the read loop,
// none of them through Next; the subscription's answer is not an event.
func TestWatchWhereFunc(t *testing.T) {
	f := newFakeDBD(t)
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan uint64, watchBurst+1)
	st, err := c.WatchWhereFunc(ctx, model.Receive, wire.WatchCond{With: "verdict"}, func(r *wire.Row) { got <- r.RowNo })
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for want := uint64(0); want < watchBurst; want++ { // the fake's events: rows 0 to watchBurst-1
		select {
		case n := <-got:
			if n != want {
				t.Fatalf("event with row %d, want %d", n, want)
			}
		case <-ctx.Done():
			t.Fatalf("event %d never came", want)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if row, err := st.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %+v, %v; want only the deadline (every event went to f)", row, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("connection after the events: %v", err)
	}
}

// TestOnConnectError: every failed connect reaches Config.OnConnectError
// with its cause, while the request itself goes on retrying until its
// deadline (what dbctl's reach cuts short).
func TestOnConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now: connects are refused
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	srv, _ := wire.GenerateKeyPair(rand.Reader)
	errs := make(chan error, 100)
	c, err := New(Config{Addr: addr, Static: kp, Server: srv.Public, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnConnectError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping succeeded with nobody listening")
	}
	select {
	case err := <-errs:
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("OnConnectError got %v, want connection refused", err)
		}
	default:
		t.Fatal("OnConnectError was not called")
	}
}

// TestRequestIDSkipsLiveCall: when the request ids come round again
// (2^32 requests, days on a busy connection) to the id of a request still
// in flight, such as a watch opened at start, the new request gets
// another id. Reusing it handed the watch's events to the new request as
// its answer (a find returned the watched row), unregistered the watch
// when the new request ended, and makes dbd end the connection.
func TestRequestIDSkipsLiveCall(t *testing.T) {
	f := newFakeDBD(t)
	c, ctx := fakeClient(t, f, Config{StreamBuffer: 2 * watchBurst})
	st, err := c.Watch(ctx, model.Receive, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c.nextID.Store(st.call.id - 1) // the counter has come round to the watch's id
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	s := st.call.s
	s.mu.Lock()
	got := s.calls[st.call.id]
	s.mu.Unlock()
	if got != st.call {
		t.Fatalf("the ping was sent with the live watch's id %d: the watch is no longer registered", st.call.id)
	}
	if _, err := st.Next(ctx); err != nil {
		t.Fatalf("watch after the ping: %v", err)
	}
}

// TestCloseEndsBackoff: Close makes a request that waits out the backoff
// after a failed connect return ErrClosed at once, not after the wait (up
// to MaxBackoff) and one more dial.
func TestCloseEndsBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connects are refused
	failed := make(chan struct{}, 1)
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	srv, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := New(Config{Addr: addr, Static: kp, Server: srv.Public, MinBackoff: time.Minute, MaxBackoff: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnConnectError: func(error) {
			select {
			case failed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Ping(ctx) }()
	<-failed // the ping now waits 30 s or more before it dials again
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ping = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ping still waiting 5 s after Close")
	}
}

// TestCloseEndsDial: Close makes a request waiting for its connect return
// ErrClosed at once, not when DialTimeout ends the dial.
func TestCloseEndsDial(t *testing.T) {
	dialing := make(chan struct{}, 1)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		dialing <- struct{}{}
		<-ctx.Done() // a connect that hangs (a peer dropping SYNs)
		return nil, ctx.Err()
	}
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	srv, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := New(Config{Addr: "192.0.2.1:1", Static: kp, Server: srv.Public, DialTimeout: time.Minute,
		Dial: dial, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Ping(ctx) }()
	<-dialing
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ping = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ping still waiting 5 s after Close")
	}
}
