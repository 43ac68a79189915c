package server_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/metrics"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
)

// testDBD is a dbd built from its parts (a real Pebble store, metrics, the
// server) on 127.0.0.1, for protocol-fault tests that read its metrics,
// set its clock, look at its store directly, or restart it on the same
// data folder (which empties the handshake replay cache, as a real restart
// does). dbdtest.Env hides these parts.
type testDBD struct {
	t     testing.TB
	dir   string
	cfg   server.Config // limits; Static, Clients, Store, Metrics, Now are filled in
	key   wire.KeyPair  // dbd's
	admin wire.KeyPair  // the one listed client key, role admin

	// skew is added to the real clock to make dbd's clock (Now). With
	// frozen set, dbd's clock stands still at frozenAt+skew instead, so
	// the handshake rate limiter refills only when a test moves it.
	skew     atomic.Int64
	frozen   atomic.Bool
	frozenAt time.Time

	// handshakes counts, by source IP, the connections that reached the
	// handshake's crypto (past the rate limiter).
	hsMu       sync.Mutex
	handshakes map[string]int

	fs vfs.FS // the store's file system; nil: the real disk

	addr   string
	st     *store.Store
	srv    *server.Server
	m      *metrics.DBD
	served chan error
}

func startDBD(t testing.TB, cfg server.Config) *testDBD {
	t.Helper()
	return startDBDOn(t, cfg, nil)
}

// startDBDOn is startDBD with the store on file system fs (nil: the real
// disk), for tests that inject disk faults.
func startDBDOn(t testing.TB, cfg server.Config, fs vfs.FS) *testDBD {
	t.Helper()
	d := &testDBD{t: t, dir: t.TempDir(), cfg: cfg, frozenAt: time.Now(), handshakes: map[string]int{}, fs: fs}
	var err error
	if d.key, err = wire.GenerateKeyPair(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if d.admin, err = wire.GenerateKeyPair(rand.Reader); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(d.stop)
	return d
}

// now is dbd's clock.
func (d *testDBD) now() time.Time {
	skew := time.Duration(d.skew.Load())
	if d.frozen.Load() {
		return d.frozenAt.Add(skew)
	}
	return time.Now().Add(skew)
}

// start opens the store and serves on a new port.
func (d *testDBD) start() {
	t := d.t
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d.m = metrics.New(prometheus.NewRegistry())
	st, err := store.Open(store.Options{Dir: filepath.Join(d.dir, "data"), Site: "test", Logger: log, OnCommit: d.m.OnCommit, FS: d.fs})
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.cfg
	cfg.Static, cfg.Store, cfg.Metrics, cfg.Logger, cfg.Now = d.key, st, d.m, log, d.now
	cfg.Clients = auth.NewClients(map[wire.PublicKey]auth.Client{d.admin.Public: {Role: auth.Admin}})
	srv, err := server.New(cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	server.SetHandshakeHook(srv, func(a net.Addr) {
		d.hsMu.Lock()
		d.handshakes[a.(*net.TCPAddr).IP.String()]++
		d.hsMu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	d.addr, d.st, d.srv, d.served = ln.Addr().String(), st, srv, make(chan error, 1)
	go func() { d.served <- srv.Serve(ln) }()
}

// stop closes the server and the store. It is safe to call twice.
func (d *testDBD) stop() {
	if d.srv == nil {
		return
	}
	d.srv.Close()
	if err := <-d.served; !errors.Is(err, server.ErrServerClosed) {
		d.t.Errorf("serve: %v", err)
	}
	if err := d.st.Close(); err != nil {
		d.t.Errorf("close store: %v", err)
	}
	d.srv = nil
}

// restart stops dbd and starts it again on the same data folder: the store
// is what was durable, the replay cache and the metrics are new.
func (d *testDBD) restart() {
	d.t.Helper()
	d.stop()
	d.start()
}

// client returns a wire client with key kp that dials with dial (nil: from
// 127.0.0.1), closed at the end of the test.
func (d *testDBD) client(kp wire.KeyPair, dial func(context.Context, string) (net.Conn, error)) *client.Client {
	d.t.Helper()
	c, err := client.New(client.Config{
		Addr: d.addr, Static: kp, Server: d.key.Public, Timeout: 10 * time.Second, Dial: dial,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// dialRaw opens a TCP connection from 127.0.0.1 and handshakes with the
// admin key through a cutConn, for tests that write hand-made or broken
// frames.
func (d *testDBD) dialRaw() (*wire.Conn, *cutConn) {
	d.t.Helper()
	nc, err := net.Dial("tcp", d.addr)
	if err != nil {
		d.t.Fatal(err)
	}
	cc := &cutConn{TCPConn: nc.(*net.TCPConn)}
	cc.budget.Store(-1)
	wc, err := wire.ClientHandshake(context.Background(), cc, &wire.ClientConfig{Static: d.admin, Server: d.key.Public})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { wc.Close() })
	return wc, cc
}

// dump is the store's own dump: every row (table, key, local number,
// size, change stamp, state) with the SHA-256 of its content, and the last
// change stamp. Any applied write changes it: a new row, a raised column
// or counter, and a new stamp even for a change that leaves the state
// equal.
func (d *testDBD) dump() string {
	d.t.Helper()
	v, err := d.st.View()
	if err != nil {
		d.t.Fatal(err)
	}
	defer v.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "last stamp %d\n", d.st.LastStamp())
	err = v.Rows(func(r store.Row) error {
		h := sha256.New()
		if err := v.Content(r.Table, r.Key, func(ch []byte) error { h.Write(ch); return nil }); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s no=%d size=%d stamp=%d state=%v sha256=%x\n", r.Table, r.Key, r.RowNo, r.Size, r.Stamp, r.State, h.Sum(nil))
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return b.String()
}

// cryptoFrom returns the handshakes from ip that reached the crypto.
func (d *testDBD) cryptoFrom(ip net.IP) int {
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	return d.handshakes[ip.String()]
}

// failures returns the handshakes refused for reason.
func (d *testDBD) failures(reason string) int {
	return int(testutil.ToFloat64(d.m.HandshakeFailures.WithLabelValues(reason)))
}

// pastLimiter returns the handshakes that got past the rate limiter and
// then failed, whatever the reason (every label but "rate"), and the
// count by reason.
func (d *testDBD) pastLimiter() (int, map[string]int) {
	total, byReason := 0, map[string]int{}
	for _, r := range handshakeReasons {
		if n := d.failures(r); n > 0 {
			total += n
			byReason[r] = n
		}
	}
	return total, byReason
}

// handshakeReasons are the labels of dbd's handshake failures other than
// "rate": wire's reasons, and "other" for an error that is not one.
var handshakeReasons = []string{
	string(wire.ReasonTimeout), string(wire.ReasonCanceled), string(wire.ReasonClosed),
	string(wire.ReasonMalformed), string(wire.ReasonDecrypt), string(wire.ReasonLowOrder),
	string(wire.ReasonUnknownKey), string(wire.ReasonClockSkew), string(wire.ReasonReplay),
	string(wire.ReasonBusy), string(wire.ReasonVersion), "other",
}

// bytesIn returns the request bytes dbd has received (decrypted frame data).
func (d *testDBD) bytesIn() int { return int(testutil.ToFloat64(d.m.BytesIn)) }

// connections returns the authenticated connections dbd has accepted.
func (d *testDBD) connections() int { return int(testutil.ToFloat64(d.m.ConnectionsTotal)) }

// waitFor polls cond until it holds; it fails the test if it does not
// within 10 s. For figures that trail what a client sees (a handshake
// failure is counted after dbd has closed the connection).
func (d *testDBD) waitFor(what string, cond func() bool) {
	d.t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.t.Fatalf("gave up waiting for %s", what)
}

// waitIdle waits until dbd has no connection open (want = 0) or exactly
// want. The gauge drops only after a connection's request goroutines have
// all returned, so after waitIdle nothing of a dropped connection is still
// running.
func (d *testDBD) waitIdle(want int) {
	d.t.Helper()
	d.waitFor(fmt.Sprintf("%d open connections", want), func() bool {
		return int(testutil.ToFloat64(d.m.Connections)) == want
	})
}

// cutConn is a TCP connection whose writes can be cut short: once budget
// (if not negative) bytes have been written, it writes no more and closes
// the connection, with a reset if rst is set. It also counts the bytes
// written.
type cutConn struct {
	*net.TCPConn
	budget  atomic.Int64
	rst     atomic.Bool
	written atomic.Int64
	mu      sync.Mutex
}

func (c *cutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.budget.Load()
	if b < 0 || int64(len(p)) < b {
		n, err := c.TCPConn.Write(p)
		c.written.Add(int64(n))
		if b >= 0 {
			c.budget.Add(-int64(n))
		}
		return n, err
	}
	n, _ := c.TCPConn.Write(p[:b])
	c.written.Add(int64(n))
	c.budget.Store(0)
	c.drop()
	return n, errCut
}

// drop closes the connection without a CLOSE frame: a FIN, or a reset
// (SO_LINGER 0) if rst is set.
func (c *cutConn) drop() {
	if c.rst.Load() {
		c.TCPConn.SetLinger(0)
	}
	c.TCPConn.Close()
}

var errCut = errors.New("test: write cut short")
