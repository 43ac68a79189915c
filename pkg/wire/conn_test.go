package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// memConn is an in-memory net.Conn for the pure cases: reads come from in
// (io.EOF when it ends or is nil), writes go to out.
type memConn struct {
	mu     sync.Mutex
	in     io.Reader
	out    bytes.Buffer
	closed bool
}

func (m *memConn) Read(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, net.ErrClosed
	}
	if m.in == nil {
		return 0, io.EOF
	}
	return m.in.Read(p)
}

func (m *memConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, net.ErrClosed
	}
	return m.out.Write(p)
}

func (m *memConn) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

func (f *fixture) serverConfig() *ServerConfig {
	return &ServerConfig{
		Static: f.server,
		Authorize: func(k PublicKey) error {
			if k != f.client.Public {
				return errors.New("not in the allow-list")
			}
			return nil
		},
		Replay: f.replay,
	}
}

func (f *fixture) clientConfig() *ClientConfig {
	return &ClientConfig{Static: f.client, Server: f.server.Public}
}

// connect runs both handshakes over a loopback TCP connection.
func connect(t testing.TB, scfg *ServerConfig, ccfg *ClientConfig) (cc, sc *Conn, cerr, serr error) {
	t.Helper()
	cnc, snc := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, serr = ServerHandshake(context.Background(), snc, scfg)
	}()
	cc, cerr = ClientHandshake(context.Background(), cnc, ccfg)
	<-done
	for _, c := range []*Conn{cc, sc} {
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return cc, sc, cerr, serr
}

func mustConnect(t testing.TB, scfg *ServerConfig, ccfg *ClientConfig) (cc, sc *Conn) {
	t.Helper()
	cc, sc, cerr, serr := connect(t, scfg, ccfg)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	return cc, sc
}

// readAll reads frames until an error, at most limit frames.
func readAll(t testing.TB, c *Conn, limit int) ([]Frame, error) {
	t.Helper()
	var got []Frame
	for range limit {
		f, err := c.ReadFrame()
		if err != nil {
			return got, err
		}
		got = append(got, f)
	}
	t.Fatalf("more than %d frames", limit)
	return nil, nil
}

// expectClosed checks that the peer closed raw: a read returns EOF or a
// reset, not data and not a timeout.
func expectClosed(t testing.TB, raw net.Conn) {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := raw.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer did not close: read %d, %v", n, err)
	}
}

func TestConnHappyPath(t *testing.T) {
	f := newFixture(t)
	cc, sc := mustConnect(t, f.serverConfig(), f.clientConfig())
	if !bytes.Equal(cc.SessionID(), sc.SessionID()) {
		t.Fatalf("session ids differ: %x vs %x", cc.SessionID(), sc.SessionID())
	}
	if cc.PeerStatic() != f.server.Public || sc.PeerStatic() != f.client.Public {
		t.Fatal("PeerStatic wrong")
	}
	if cc.RemoteAddr() == nil || sc.RemoteAddr().String() != cc.nc.LocalAddr().String() {
		t.Fatal("RemoteAddr wrong")
	}
	if cc.MaxFrameData() != MaxFrameData {
		t.Fatalf("MaxFrameData = %d, want %d", cc.MaxFrameData(), MaxFrameData)
	}
	big := bytes.Repeat([]byte("0123456789"), MaxFrameData/10+1)[:MaxFrameData]
	sent := []Frame{
		{ReqID: 1, Data: []byte("find-or-insert")},
		{Flags: FlagMore, ReqID: 2, Data: big},
		{ReqID: 2},
		{Flags: FlagCancel, ReqID: 3},
	}
	go func() {
		for _, fr := range sent {
			if err := cc.WriteFrame(fr); err != nil {
				t.Errorf("WriteFrame: %v", err)
			}
		}
	}()
	for i, want := range sent {
		got, err := sc.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame %d: %v", i, err)
		}
		if got.Flags != want.Flags || got.ReqID != want.ReqID || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("frame %d = %v/%d/%d bytes, want %v/%d/%d bytes", i, got.Flags, got.ReqID, len(got.Data),
				want.Flags, want.ReqID, len(want.Data))
		}
	}
	if err := sc.WriteFrame(Frame{ReqID: 1, Data: []byte("row 7")}); err != nil {
		t.Fatal(err)
	}
	if got, err := cc.ReadFrame(); err != nil || string(got.Data) != "row 7" || got.ReqID != 1 {
		t.Fatalf("client ReadFrame = %+v, %v", got, err)
	}
	if err := cc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := cc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for range 2 {
		if _, err := sc.ReadFrame(); err != io.EOF {
			t.Fatalf("server ReadFrame after CLOSE = %v, want io.EOF", err)
		}
	}
	if _, err := cc.ReadFrame(); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFrame after Close = %v, want ErrClosed", err)
	}
	if err := cc.WriteFrame(Frame{ReqID: 9}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteFrame after Close = %v, want ErrClosed", err)
	}
}

func TestConnHandshakeRefusals(t *testing.T) {
	t.Run("unknown client key", func(t *testing.T) {
		f := newFixture(t)
		ccfg := f.clientConfig()
		ccfg.Static = mustKeyPair(t)
		_, _, cerr, serr := connect(t, f.serverConfig(), ccfg)
		he := wantReason(t, serr, ReasonUnknownKey)
		if he.Peer != ccfg.Static.Public {
			t.Fatalf("Peer = %v, want the client's key", he.Peer)
		}
		wantReason(t, cerr, ReasonClosed)
	})
	t.Run("wrong pinned server key", func(t *testing.T) {
		f := newFixture(t)
		ccfg := f.clientConfig()
		ccfg.Server = mustKeyPair(t).Public
		_, _, cerr, serr := connect(t, f.serverConfig(), ccfg)
		wantReason(t, serr, ReasonDecrypt)
		wantReason(t, cerr, ReasonClosed)
	})
	t.Run("clock skew", func(t *testing.T) {
		for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
			f := newFixture(t)
			ccfg := f.clientConfig()
			ccfg.Now = func() time.Time { return time.Now().Add(skew) }
			_, _, cerr, serr := connect(t, f.serverConfig(), ccfg)
			he := wantReason(t, serr, ReasonClockSkew)
			if d := he.Skew - skew; d < -time.Minute || d > time.Minute {
				t.Fatalf("Skew = %v, want about %v", he.Skew, skew)
			}
			wantReason(t, cerr, ReasonClosed)
		}
	})
	t.Run("prologue mismatch", func(t *testing.T) {
		f := newFixture(t)
		cnc, snc := tcpPair(t)
		done := make(chan error, 1)
		go func() {
			_, err := ServerHandshake(context.Background(), snc, f.serverConfig())
			done <- err
		}()
		p, err := f.clientConfig().params()
		if err != nil {
			t.Fatal(err)
		}
		p.prologue = []byte("twinmx-dbd/0")
		_, cerr := clientHandshake(context.Background(), cnc, p)
		wantReason(t, <-done, ReasonDecrypt)
		wantReason(t, cerr, ReasonClosed)
	})
	t.Run("forged message 2", func(t *testing.T) {
		// A man in the middle with its own key cannot read message 1 and
		// so cannot answer it; whatever it sends fails.
		f := newFixture(t)
		other := newFixture(t)
		_, m1 := other.msg1(t, testNow)
		m2other, _, err := other.responder(testNow).respond(m1)
		if err != nil {
			t.Fatal(err)
		}
		for name, m2 := range map[string][]byte{"random": seq(7, Msg2Size), "other session": m2other} {
			cnc, snc := tcpPair(t)
			go func() {
				if _, err := readHandshakeMsg(snc, Msg1Size); err == nil {
					writeHandshakeMsg(snc, m2)
				}
			}()
			_, err := ClientHandshake(context.Background(), cnc, f.clientConfig())
			if he := wantReason(t, err, ReasonDecrypt); he == nil {
				t.Fatal(name)
			}
		}
	})
}

// TestConnLowOrderKeys sends all seven low-order points as e and as s over
// TCP; the server refuses each and closes the connection.
func TestConnLowOrderKeys(t *testing.T) {
	f := newFixture(t)
	for i := range lowOrderPoints {
		lo := lowOrderKey(t, i)
		t.Run("e "+lowOrderPoints[i][:8], func(t *testing.T) {
			cnc, snc := tcpPair(t)
			done := make(chan error, 1)
			go func() {
				_, err := ServerHandshake(context.Background(), snc, f.serverConfig())
				done <- err
			}()
			_, m1 := f.msg1(t, time.Now())
			copy(m1, lo[:])
			if err := writeHandshakeMsg(cnc, m1); err != nil {
				t.Fatal(err)
			}
			wantReason(t, <-done, ReasonLowOrder)
			expectClosed(t, cnc)
		})
		t.Run("s "+lowOrderPoints[i][:8], func(t *testing.T) {
			cnc, snc := tcpPair(t)
			done := make(chan error, 1)
			scfg := f.serverConfig()
			scfg.Authorize = func(PublicKey) error { return nil }
			go func() {
				_, err := ServerHandshake(context.Background(), snc, scfg)
				done <- err
			}()
			bad := KeyPair{Private: mustKeyPair(t).Private, Public: lo}
			p := &clientParams{static: &bad, server: f.server.Public, now: time.Now,
				timeout: DefaultHandshakeTimeout, rekey: DefaultRekeyFrames, prologue: []byte(Prologue)}
			_, cerr := clientHandshake(context.Background(), cnc, p)
			wantReason(t, <-done, ReasonLowOrder)
			wantReason(t, cerr, ReasonClosed)
		})
	}
}

// handshakeServer accepts connections and reports each handshake result.
type handshakeServer struct {
	addr    string
	results chan error
}

func startServer(t testing.TB, cfg *ServerConfig) *handshakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &handshakeServer{addr: ln.Addr().String(), results: make(chan error, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ServerHandshake(context.Background(), nc, cfg)
				if err == nil {
					// Echo frames until the client ends the session.
					for {
						f, err := c.ReadFrame()
						if err != nil {
							if err != io.EOF {
								s.results <- err
							}
							break
						}
						if err := c.WriteFrame(f); err != nil {
							break
						}
					}
					c.Close()
				}
				s.results <- err
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

// recConn records what is written to it.
type recConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// fakeClock is a settable clock for the server.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time)     { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestConnReplayMsg1 replays a recorded message 1 on new connections
// (TEST-CATALOG item 61): within the window the replay cache refuses it,
// after the window the timestamp check does, and even a server with both
// checks defeated gets no usable session from a replayed transcript.
func TestConnReplayMsg1(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: time.Now()}
	scfg := f.serverConfig()
	scfg.Now = clock.Now
	srv := startServer(t, scfg)

	// A real session, recorded.
	nc, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recConn{Conn: nc}
	ccfg := f.clientConfig()
	ccfg.Now = clock.Now
	c, err := ClientHandshake(context.Background(), rec, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFrame(Frame{ReqID: 1, Data: []byte("set row 5 col 2")}); err != nil {
		t.Fatal(err)
	}
	if fr, err := c.ReadFrame(); err != nil || string(fr.Data) != "set row 5 col 2" {
		t.Fatalf("echo = %q, %v", fr.Data, err)
	}
	c.Close()
	if err := <-srv.results; err != nil {
		t.Fatalf("recorded session: %v", err)
	}
	transcript := rec.out.Bytes()
	msg1 := transcript[:LengthSize+Msg1Size]

	replay := func(b []byte) {
		t.Helper()
		raw, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, raw)
	}
	clock.Add(time.Minute)
	replay(msg1)
	wantReason(t, <-srv.results, ReasonReplay)

	clock.Add(2*DefaultWindow + time.Second)
	replay(msg1)
	wantReason(t, <-srv.results, ReasonClockSkew)

	// Both checks defeated: a fresh cache and the clock turned back. The
	// server completes the handshake with a new ephemeral key, so the
	// recorded frames (made under the old session keys) fail.
	fresh := newFixture(t)
	fresh.client, fresh.server = f.client, f.server
	scfg2 := fresh.serverConfig()
	scfg2.Now = func() time.Time { return clock.Now().Add(-time.Minute - 2*DefaultWindow - time.Second) }
	srv2 := startServer(t, scfg2)
	raw, err := net.Dial("tcp", srv2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write(transcript); err != nil {
		t.Fatal(err)
	}
	err = <-srv2.results
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("replayed session: %v, want ErrDecrypt on the first frame", err)
	}
}

// TestConnConcurrentHandshakes connects 8 pooled connections from one
// client key at once; all must succeed (a per-key timestamp check, as in
// WireGuard, would refuse some).
func TestConnConcurrentHandshakes(t *testing.T) {
	f := newFixture(t)
	srv := startServer(t, f.serverConfig())
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ids := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", srv.addr)
			if err != nil {
				errs <- err
				return
			}
			c, err := ClientHandshake(context.Background(), nc, f.clientConfig())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("conn %d", i)
			if err := c.WriteFrame(Frame{ReqID: uint32(i), Data: []byte(msg)}); err != nil {
				errs <- err
				return
			}
			fr, err := c.ReadFrame()
			if err != nil || string(fr.Data) != msg {
				errs <- fmt.Errorf("echo %q, %v", fr.Data, err)
				return
			}
			ids <- string(c.SessionID())
		}()
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Errorf("client: %v", err)
	}
	seen := make(map[string]bool)
	for id := range ids {
		if seen[id] {
			t.Error("two sessions share an id")
		}
		seen[id] = true
	}
	for range n {
		if err := <-srv.results; err != nil {
			t.Errorf("server: %v", err)
		}
	}
}

func TestConnHandshakeTimeouts(t *testing.T) {
	f := newFixture(t)
	t.Run("silent client", func(t *testing.T) {
		_, snc := tcpPair(t)
		scfg := f.serverConfig()
		scfg.HandshakeTimeout = 100 * time.Millisecond
		start := time.Now()
		_, err := ServerHandshake(context.Background(), snc, scfg)
		wantReason(t, err, ReasonTimeout)
		if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
			t.Fatalf("timed out after %v", d)
		}
	})
	t.Run("silent client default deadline", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits 5 s")
		}
		_, snc := tcpPair(t)
		start := time.Now()
		_, err := ServerHandshake(context.Background(), snc, f.serverConfig())
		wantReason(t, err, ReasonTimeout)
		if d := time.Since(start); d < DefaultHandshakeTimeout || d > 2*DefaultHandshakeTimeout {
			t.Fatalf("timed out after %v, want about %v", d, DefaultHandshakeTimeout)
		}
	})
	t.Run("client sends half of message 1", func(t *testing.T) {
		cnc, snc := tcpPair(t)
		_, m1 := f.msg1(t, time.Now())
		cnc.Write(append([]byte{0, Msg1Size}, m1[:50]...))
		scfg := f.serverConfig()
		scfg.HandshakeTimeout = 100 * time.Millisecond
		_, err := ServerHandshake(context.Background(), snc, scfg)
		wantReason(t, err, ReasonTimeout)
	})
	t.Run("silent server", func(t *testing.T) {
		cnc, _ := tcpPair(t)
		ccfg := f.clientConfig()
		ccfg.HandshakeTimeout = 100 * time.Millisecond
		_, err := ClientHandshake(context.Background(), cnc, ccfg)
		wantReason(t, err, ReasonTimeout)
	})
	t.Run("context deadline", func(t *testing.T) {
		_, snc := tcpPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := ServerHandshake(ctx, snc, f.serverConfig())
		wantReason(t, err, ReasonTimeout)
	})
	t.Run("context canceled", func(t *testing.T) {
		_, snc := tcpPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := ServerHandshake(ctx, snc, f.serverConfig())
			done <- err
		}()
		cancel()
		wantReason(t, <-done, ReasonCanceled)
	})
	t.Run("client closes", func(t *testing.T) {
		cnc, snc := tcpPair(t)
		cnc.Close()
		_, err := ServerHandshake(context.Background(), snc, f.serverConfig())
		wantReason(t, err, ReasonClosed)
	})
}

// TestConnHandshakeLengthPrefix sends wrong message-1 length prefixes; the
// server refuses them without reading a body.
func TestConnHandshakeLengthPrefix(t *testing.T) {
	f := newFixture(t)
	for _, n := range []uint16{0, 15, Msg1Size - 1, Msg1Size + 1, 65535} {
		cnc, snc := tcpPair(t)
		cnc.Write(binary.BigEndian.AppendUint16(nil, n))
		_, err := ServerHandshake(context.Background(), snc, f.serverConfig())
		wantReason(t, err, ReasonMalformed)
		expectClosed(t, cnc)
	}
	// Every bit of the real prefix.
	for bit := range 16 {
		cnc, snc := tcpPair(t)
		_, m1 := f.msg1(t, time.Now())
		b := append(binary.BigEndian.AppendUint16(nil, Msg1Size), m1...)
		b[bit/8] ^= 1 << (bit % 8)
		cnc.Write(b)
		scfg := f.serverConfig()
		scfg.HandshakeTimeout = time.Second
		_, err := ServerHandshake(context.Background(), snc, scfg)
		wantReason(t, err, ReasonMalformed)
	}
}

// TestConnMsg2LengthPrefix flips every bit of message 2's length prefix;
// the client refuses each without reading a body.
func TestConnMsg2LengthPrefix(t *testing.T) {
	f := newFixture(t)
	for bit := range 16 {
		cnc, snc := tcpPair(t)
		go func() {
			m1, err := readHandshakeMsg(snc, Msg1Size)
			if err != nil {
				return
			}
			r := f.responder(time.Now())
			m2, _, err := r.respond(m1)
			if err != nil {
				return
			}
			b := append(binary.BigEndian.AppendUint16(nil, Msg2Size), m2...)
			b[bit/8] ^= 1 << (bit % 8)
			snc.Write(b)
		}()
		ccfg := f.clientConfig()
		ccfg.HandshakeTimeout = time.Second
		_, err := ClientHandshake(context.Background(), cnc, ccfg)
		wantReason(t, err, ReasonMalformed)
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFixture(t)
	nc := &memConn{}
	_, err := ServerHandshake(context.Background(), nc, &ServerConfig{MaxFrame: 10, Replay: NewReplayCache(time.Minute, 1)})
	if err == nil {
		t.Fatal("empty server config accepted")
	}
	for _, want := range []string{"static key", "Authorize", "TTL", "MaxFrame"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("config error %q does not mention %s", err, want)
		}
	}
	if !nc.closed {
		t.Error("net.Conn not closed after a config error")
	}
	scfg := f.serverConfig()
	scfg.Replay = nil
	if _, err := ServerHandshake(context.Background(), &memConn{}, scfg); err == nil || !strings.Contains(err.Error(), "Replay") {
		t.Errorf("nil Replay: %v", err)
	}
	scfg = f.serverConfig()
	scfg.Static.Public[0] ^= 1
	if _, err := ServerHandshake(context.Background(), &memConn{}, scfg); !errors.Is(err, ErrBadKey) {
		t.Errorf("mismatched static pair: %v", err)
	}
	if _, err := ClientHandshake(context.Background(), &memConn{}, &ClientConfig{}); err == nil ||
		!strings.Contains(err.Error(), "server key") || !strings.Contains(err.Error(), "static key") {
		t.Errorf("empty client config: %v", err)
	}
}

func ExampleClientHandshake() {
	serverKeys, _ := GenerateKeyPair(rand0{})
	clientKeys, _ := GenerateKeyPair(rand1{})
	cnc, snc := net.Pipe()

	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ServerHandshake(context.Background(), snc, &ServerConfig{
			Static: serverKeys,
			Authorize: func(k PublicKey) error {
				if k != clientKeys.Public {
					return errors.New("unknown client")
				}
				return nil
			},
			Replay: NewReplayCache(0, 0),
		})
		done <- result{c, err}
	}()
	client, err := ClientHandshake(context.Background(), cnc, &ClientConfig{
		Static: clientKeys,
		Server: serverKeys.Public,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := <-done
	if r.err != nil {
		fmt.Println(r.err)
		return
	}
	server := r.c
	fmt.Println("same session:", bytes.Equal(client.SessionID(), server.SessionID()))

	go client.WriteFrame(Frame{ReqID: 1, Data: []byte("ping")})
	f, _ := server.ReadFrame()
	fmt.Println(f.ReqID, string(f.Data))

	go client.Close()
	_, err = server.ReadFrame()
	fmt.Println(err)
	server.Close()
	// Output:
	// same session: true
	// 1 ping
	// EOF
}

// rand0 and rand1 are fixed "random" sources for the example only.
type rand0 struct{}
type rand1 struct{}

func (rand0) Read(p []byte) (int, error) { return fill(p, 0x11), nil }
func (rand1) Read(p []byte) (int, error) { return fill(p, 0x22), nil }
func fill(p []byte, b byte) int {
	for i := range p {
		p[i] = b + byte(i)
	}
	return len(p)
}

func BenchmarkHandshake(b *testing.B) {
	f := newFixture(b)
	f.replay = NewReplayCache(time.Hour, 1<<24)
	scfg, ccfg := f.serverConfig(), f.clientConfig()
	ctx := context.Background()
	for b.Loop() {
		cnc, snc := net.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := ServerHandshake(ctx, snc, scfg)
			done <- err
		}()
		_, err := ClientHandshake(ctx, cnc, ccfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		cnc.Close()
		snc.Close()
	}
}

func BenchmarkFrameRoundTrip(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1024}, {"64KiB", MaxFrameData}} {
		b.Run(size.name, func(b *testing.B) {
			f := newFixture(b)
			cc, sc := mustConnect(b, f.serverConfig(), f.clientConfig())
			data := make([]byte, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for range b.N {
					if err := cc.WriteFrame(Frame{ReqID: 1, Data: data}); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for range b.N {
				if _, err := sc.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestConnHold: frames written under a hold stay in the buffer (the peer
// reads nothing) until release, then all arrive in order.
func TestConnHold(t *testing.T) {
	f := newFixture(t)
	cc, sc := mustConnect(t, f.serverConfig(), f.clientConfig())
	defer cc.Close()
	release := cc.Hold()
	for i := range 3 {
		if err := cc.WriteFrame(Frame{ReqID: uint32(i + 1), Data: []byte("event")}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan Frame, 3)
	go func() {
		for range 3 {
			fr, err := sc.ReadFrame()
			if err != nil {
				return
			}
			got <- fr
		}
	}()
	select {
	case fr := <-got:
		t.Fatalf("frame %d arrived during the hold", fr.ReqID)
	case <-time.After(100 * time.Millisecond):
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case fr := <-got:
			if fr.ReqID != uint32(i+1) {
				t.Fatalf("frame %d has request id %d", i, fr.ReqID)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("frames did not arrive after release")
		}
	}
}

// TestServerKeyRotation: a server with a new key and the old one in
// Previous serves clients pinning either, on the session of the key they
// pinned (each side's transport keys match: frames flow both ways); a
// client pinning an unrelated key is refused as before, and once the old
// key is dropped from Previous, so is a client pinning it.
func TestServerKeyRotation(t *testing.T) {
	f := newFixture(t)
	old := f.server
	next := mustKeyPair(t)
	scfg := f.serverConfig()
	scfg.Static, scfg.Previous = next, []KeyPair{old}
	for name, pinned := range map[string]PublicKey{"old key": old.Public, "new key": next.Public} {
		ccfg := f.clientConfig()
		ccfg.Server = pinned
		cc, sc := mustConnect(t, scfg, ccfg)
		if err := cc.WriteFrame(Frame{ReqID: 1, Data: []byte("ping " + name)}); err != nil {
			t.Fatal(err)
		}
		if fr, err := sc.ReadFrame(); err != nil || string(fr.Data) != "ping "+name {
			t.Fatalf("%s: server read %q, %v", name, fr.Data, err)
		}
		if err := sc.WriteFrame(Frame{ReqID: 1, Data: []byte("pong")}); err != nil {
			t.Fatal(err)
		}
		if fr, err := cc.ReadFrame(); err != nil || string(fr.Data) != "pong" {
			t.Fatalf("%s: client read %q, %v", name, fr.Data, err)
		}
	}
	ccfg := f.clientConfig()
	ccfg.Server = mustKeyPair(t).Public
	_, _, cerr, serr := connect(t, scfg, ccfg)
	wantReason(t, serr, ReasonDecrypt)
	wantReason(t, cerr, ReasonClosed)

	scfg.Previous = nil
	ccfg.Server = old.Public
	_, _, cerr, serr = connect(t, scfg, ccfg)
	wantReason(t, serr, ReasonDecrypt)
	wantReason(t, cerr, ReasonClosed)

	bad := f.serverConfig()
	bad.Previous = []KeyPair{{}}
	if _, err := bad.params(); err == nil {
		t.Error("an empty previous key pair was accepted")
	}
}
