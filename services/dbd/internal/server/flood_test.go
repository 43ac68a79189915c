package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

// floodIP is the source address of the flood: another loopback address
// than the legitimate clients' 127.0.0.1, because the rate limit is per IP.
var floodIP = net.IPv4(127, 0, 0, 2)

// TestHandshakeFlood (TEST-CATALOG item 75): a flood of first handshake
// messages from one IP — valid messages from an unknown client key,
// garbage of the right length, a wrong length prefix, a message cut short —
// is refused beyond the per-IP rate before any Curve25519 work, dbd sends
// the flood nothing and stays responsive, and legitimate clients with a
// listed key connect and are served during the flood (from another IP)
// and after it (from the flood's IP, once its bucket has refilled).
//
// dbd's clock stands still, so the token bucket never refills by itself:
// exactly burst (4 × rate) of the flood's handshakes get past the limiter,
// whatever the speed of the machine, and every other one is refused with
// reason "rate". A hook counts the connections that reach the handshake's
// crypto, by source IP; the ones that got past also show in dbd's failure
// reasons (unknown-key, decrypt, malformed, closed).
func TestHandshakeFlood(t *testing.T) {
	const (
		rate        = 25
		burst       = 4 * rate
		minAttempts = 1000 // the flood: at least this many handshakes,
		maxAttempts = 5000 // at most this many,
		floodTime   = 20 * time.Second
		legitRounds = 10 // new legitimate connections during the flood
	)
	d := startDBD(t, server.Config{HandshakeRate: rate})
	d.frozen.Store(true)
	ctx := ctxT(t)
	payloads := floodPayloads(t, d.key.Public)

	var attempts, received, keptOpen atomic.Int64
	var legitDone atomic.Bool
	deadline := time.Now().Add(floodTime)
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: floodIP}}
			for time.Now().Before(deadline) {
				n := attempts.Load()
				if n >= maxAttempts || (n >= minAttempts && legitDone.Load()) {
					return
				}
				nc, err := dialer.Dial("tcp", d.addr)
				if err != nil {
					t.Errorf("flood dial: %v", err)
					return
				}
				i := attempts.Add(1)
				got, timedOut := floodOnce(nc, payloads[int(i)%len(payloads)])
				received.Add(int64(got))
				if timedOut {
					keptOpen.Add(1)
				}
			}
		}()
	}

	// Legitimate clients from 127.0.0.1 while the flood runs: once the
	// flood's burst is spent, a new connection each round for the first
	// rounds, then requests on the last one, until the flood has been
	// refused a few hundred times more meanwhile.
	d.waitFor("the flood to exhaust its burst", func() bool { return d.failures("rate") > 0 })
	refusedBefore := d.failures("rate")
	content := []byte("written during the flood")
	var c *client.Client
	rounds := 0
	for ; rounds < 1000 && (rounds < legitRounds || d.failures("rate") < refusedBefore+300); rounds++ {
		if rounds < legitRounds {
			if c != nil {
				c.Close()
			}
			c = d.client(d.admin, nil)
		}
		if _, _, err := c.FindOrInsert(ctx, model.Text, content); err != nil {
			t.Fatalf("round %d during the flood: %v", rounds, err)
		}
		if _, err := c.Increment(ctx, model.Text, wire.Ref{Content: content}, "hits", 1); err != nil {
			t.Fatalf("round %d during the flood: %v", rounds, err)
		}
	}
	refusedDuring := d.failures("rate") - refusedBefore
	legitDone.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if t.Failed() {
		return
	}

	n := int(attempts.Load())
	if n < minAttempts || refusedDuring < 300 {
		t.Fatalf("the flood made %d handshakes (%d refused while legitimate clients ran); the bounds stopped it", n, refusedDuring)
	}
	if got := d.failures("rate"); got != n-burst {
		t.Errorf("%d of %d flood handshakes refused by the rate limit, want %d (all but the burst of %d)", got, n, n-burst, burst)
	}
	if got := d.cryptoFrom(floodIP); got != burst {
		t.Errorf("%d flood handshakes reached the crypto, want exactly the burst of %d", got, burst)
	}
	d.waitFor("the flood's failures to be counted", func() bool { past, _ := d.pastLimiter(); return past >= burst })
	if past, by := d.pastLimiter(); past != burst {
		t.Errorf("%d flood handshakes failed past the rate limiter (%v), want exactly the burst of %d", past, by, burst)
	} else {
		t.Logf("the burst of %d failed as %v", burst, by)
	}
	if got := d.cryptoFrom(net.IPv4(127, 0, 0, 1)); got != legitRounds {
		t.Errorf("%d handshakes from 127.0.0.1 reached the crypto, want the %d legitimate ones", got, legitRounds)
	}
	if got := received.Load(); got != 0 {
		t.Errorf("dbd sent %d bytes to the flood", got)
	}
	if got := keptOpen.Load(); got != 0 {
		t.Errorf("dbd kept %d flood connections open", got)
	}
	if got := d.connections(); got != legitRounds {
		t.Errorf("%d connections authenticated, want the %d legitimate ones", got, legitRounds)
	}
	row, err := c.Find(ctx, model.Text, content)
	if err != nil || row.State.Counter("hits") != uint64(rounds) {
		t.Fatalf("counter after %d rounds = %+v, %v", rounds, row, err)
	}

	// After the flood, a second later on dbd's clock: the flood's IP has
	// tokens again, and a listed key connecting from it is served.
	d.skew.Store(int64(time.Second))
	after := d.client(d.admin, func(ctx context.Context, addr string) (net.Conn, error) {
		dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: floodIP}}
		return dialer.DialContext(ctx, "tcp", addr)
	})
	if err := after.Ping(ctx); err != nil {
		t.Fatalf("a listed key from the flood's IP after the flood: %v", err)
	}

	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	t.Logf("flood: %d handshakes in %v (%.0f/s), %d refused before crypto; process CPU (flood and dbd) %v, %v per handshake; %d legitimate rounds meanwhile",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), n-burst, cpu.Round(time.Millisecond), cpu/time.Duration(n), rounds)
}

// floodOnce sends one flood handshake on nc and reads until dbd closes the
// connection. It returns the bytes dbd sent, and whether dbd kept the
// connection open for 10 s.
func floodOnce(nc net.Conn, payload []byte) (received int, timedOut bool) {
	defer nc.Close()
	nc.Write(payload) // may fail: dbd may have refused and closed already
	// Half-close, so a message cut short ends at once instead of waiting
	// out the handshake timeout.
	nc.(*net.TCPConn).CloseWrite()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, nc)
	var ne net.Error
	return int(got), errors.As(err, &ne) && ne.Timeout()
}

// floodPayloads returns first handshake messages dbd must refuse: valid
// ones from unknown client keys (each with its own ephemeral key), random
// bytes of the right length, a wrong length prefix, and a valid one cut
// short.
func floodPayloads(t testing.TB, server wire.PublicKey) [][]byte {
	t.Helper()
	var out [][]byte
	for range 16 {
		msg1 := unknownKeyMsg1(t, server)
		garbage := make([]byte, len(msg1))
		copy(garbage, msg1[:wire.LengthSize])
		rand.Read(garbage[wire.LengthSize:])
		badPrefix := append([]byte{0xff, 0xff}, msg1[wire.LengthSize:]...)
		out = append(out, msg1, garbage, badPrefix, msg1[:50])
	}
	return out
}

// unknownKeyMsg1 returns a well-formed message 1 (length prefix
// included) to server from a fresh, unlisted client key.
func unknownKeyMsg1(t testing.TB, server wire.PublicKey) []byte {
	t.Helper()
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var w msg1Catcher
	_, err = wire.ClientHandshake(context.Background(), &w, &wire.ClientConfig{Static: kp, Server: server})
	if err == nil || w.Len() != wire.LengthSize+wire.Msg1Size {
		t.Fatalf("capture message 1: %d bytes, %v", w.Len(), err)
	}
	return w.Bytes()
}

// msg1Catcher is a net.Conn that keeps what is written and ends every read:
// ClientHandshake on it writes message 1 and then fails.
type msg1Catcher struct {
	bytes.Buffer
}

func (*msg1Catcher) Read([]byte) (int, error)         { return 0, io.EOF }
func (*msg1Catcher) Close() error                     { return nil }
func (*msg1Catcher) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (*msg1Catcher) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (*msg1Catcher) SetDeadline(time.Time) error      { return nil }
func (*msg1Catcher) SetReadDeadline(time.Time) error  { return nil }
func (*msg1Catcher) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkHandshakeFlood measures what one flood handshake (a valid
// message 1 from an unknown key, one connection each, from one IP) costs
// the process — the flooding client and dbd together — when the rate
// limit refuses it before any crypto, and when it gets past the limit and
// dbd does the Curve25519 work before refusing the key. cpu-ns/op is user
// plus system CPU.
func BenchmarkHandshakeFlood(b *testing.B) {
	for _, bc := range []struct {
		name string
		rate float64
	}{
		{"refused-by-rate", 0.1}, // burst 0.4: no token ever
		{"past-the-limit", 1e9},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := startDBD(b, server.Config{HandshakeRate: bc.rate})
			d.frozen.Store(true)
			msg1 := unknownKeyMsg1(b, d.key.Public)
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: floodIP}}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			for range b.N {
				nc, err := dialer.Dial("tcp", d.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, timedOut := floodOnce(nc, msg1); timedOut {
					b.Fatal("dbd kept a flood connection open")
				}
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(d.cryptoFrom(floodIP))/float64(b.N), "crypto/op")
		})
	}
}
