package ctl

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/internal/daemon"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
	"github.com/urfave/cli/v2"
)

func benchCmd() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure dbd against embedded Pebble in one run (starts its own dbd on loopback)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "concurrency", Value: 64, Usage: "requests in flight"},
			&cli.IntFlag{Name: "size", Value: 1024, Usage: "content bytes per row"},
			&cli.IntFlag{Name: "connections", Value: 1, Usage: "connections the requests in flight are spread over"},
			&cli.IntFlag{Name: "rounds", Value: 2, Usage: "alternating rounds of baseline and wire phases"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each throughput phase"},
			&cli.StringFlag{Name: "dir", Usage: "folder for the temporary data (empty: the system temp folder)"},
		},
		Action: bench,
	}
}

// bench runs, in order: embedded Pebble synced writes (the baseline), the
// same writes as find-or-insert over the wire protocol to a real dbd on
// loopback, handshake time, and latency at low load. The last line is the
// ratio the foundation issue asks for.
func bench(c *cli.Context) error {
	conc, size, dur := c.Int("concurrency"), c.Int("size"), c.Duration("duration")
	if conc < 1 || size < 0 || dur <= 0 || c.Int("rounds") < 1 || c.Int("connections") < 1 {
		return usageError("bench: --concurrency, --rounds, --connections ≥ 1, --size ≥ 0, --duration > 0")
	}
	root, err := os.MkdirTemp(c.String("dir"), "dbctl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	w := c.App.Writer
	fmt.Fprintf(w, "bench: concurrency=%d size=%d duration=%s dir=%s\n", conc, size, dur, root)

	env, err := startBenchDBD(c.Context, root)
	if err != nil {
		return err
	}
	defer env.stop()
	cl, err := env.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	clients := []*client.Client{cl}
	for i := 1; i < c.Int("connections"); i++ {
		ci, err := env.client()
		if err != nil {
			return err
		}
		defer ci.Close()
		clients = append(clients, ci)
	}
	// The disk's speed drifts (other tenants, compactions), so the
	// baseline and the wire phases alternate and the ratio is taken over
	// the sums.
	var baseSum, wireSum float64
	for round := 1; round <= c.Int("rounds"); round++ {
		// One baseline database across rounds, as dbd keeps its own: both
		// carry the same growing data (and compaction work).
		base, err := benchPebble(c.Context, filepath.Join(root, "pebble"), conc, size, dur, uint64(round))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "round %d: embedded pebble synced writes: %.0f ops/s\n", round, base)
		before, err := env.commits(c.Context)
		if err != nil {
			return err
		}
		wireOps, err := benchWire(c.Context, clients, conc, size, dur, uint64(round))
		if err != nil {
			return err
		}
		after, err := env.commits(c.Context)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "round %d: wire find-or-insert: %.0f ops/s (%s)\n", round, wireOps, after.since(before, dur))
		baseSum += base
		wireSum += wireOps
	}

	hs, err := benchHandshake(c.Context, env, 50)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "handshake (connect + IK + first ping): mean %s\n", hs.Round(time.Microsecond))

	p50, p99, n, err := benchLatency(c.Context, cl, size, min(dur, 3*time.Second))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "latency at low load (1 in flight, %d ops): p50 %s p99 %s\n", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	fmt.Fprintf(w, "ratio: %.2f\n", wireSum/baseSum)
	return nil
}

// content returns a unique content of size bytes for worker w, op i.
func benchContent(buf []byte, run uint64, w, i int) []byte {
	binary.BigEndian.PutUint64(buf[0:], run)
	binary.BigEndian.PutUint64(buf[8:], uint64(w))
	binary.BigEndian.PutUint64(buf[16:], uint64(i))
	return buf
}

func newBenchBuf(size int) []byte {
	b := make([]byte, max(size, 24))
	rand.Read(b)
	return b
}

// benchPebble measures conc goroutines each committing one 1-row batch with
// pebble.Sync, the same durability dbd gives every answer.
func benchPebble(ctx context.Context, dir string, conc, size int, dur time.Duration, round uint64) (float64, error) {
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	opts := store.PebbleOptions(cache, store.DefaultMemTableSize)
	opts.Logger = quietPebble{}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return runLoad(ctx, conc, size, dur, func(g, i int, buf []byte) error {
		v := benchContent(buf, round, g, i)
		k := model.KeyOf(model.Body, v)
		b := db.NewBatch()
		defer b.Close()
		b.Set(k[:], v, nil)
		return b.Commit(pebble.Sync)
	})
}

// runLoad runs op in conc goroutines for dur (each with its own buffer of
// size bytes) and returns the completed operations per second. The first
// error stops its goroutine and is returned.
func runLoad(ctx context.Context, conc, size int, dur time.Duration, op func(g, i int, buf []byte) error) (float64, error) {
	var ops atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := newBenchBuf(size)
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				if err := op(g, i, buf); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				ops.Add(1)
			}
		}(g)
	}
	start := time.Now()
	wg.Wait()
	return float64(ops.Load()) / time.Since(start).Seconds(), firstErr
}

// benchWire runs conc find-or-insert loops spread over the clients (each
// its own connection).
func benchWire(ctx context.Context, clients []*client.Client, conc, size int, dur time.Duration, round uint64) (float64, error) {
	return runLoad(ctx, conc, size, dur, func(g, i int, buf []byte) error {
		_, _, err := clients[g%len(clients)].FindOrInsert(ctx, model.Body, benchContent(buf, 100+round, g, i))
		return err
	})
}

func benchHandshake(ctx context.Context, env *benchEnv, n int) (time.Duration, error) {
	var total time.Duration
	for i := 0; i < n; i++ {
		cl, err := env.client()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		err = cl.Ping(ctx)
		total += time.Since(start)
		cl.Close()
		if err != nil {
			return 0, err
		}
	}
	return total / time.Duration(n), nil
}

func benchLatency(ctx context.Context, cl *client.Client, size int, dur time.Duration) (p50, p99 time.Duration, n int, err error) {
	buf := newBenchBuf(size)
	var lat []time.Duration
	deadline := time.Now().Add(dur)
	for i := 0; time.Now().Before(deadline) && i < 100000; i++ {
		start := time.Now()
		if _, _, err := cl.FindOrInsert(ctx, model.Body, benchContent(buf, 3, 0, i)); err != nil {
			return 0, 0, 0, err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), nil
}

// benchEnv is a dbd started in-process on loopback with fresh keys.
type benchEnv struct {
	addr    string
	metrics string // dbd's /metrics HOST:PORT
	dbPub   wire.PublicKey
	admin   wire.KeyPair
	cancel  context.CancelFunc
	done    chan error
}

func startBenchDBD(ctx context.Context, root string) (*benchEnv, error) {
	keys := filepath.Join(root, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	var pairs [2]wire.KeyPair
	for i, name := range []string{"dbd", "admin"} {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := wire.WriteKeyFiles(filepath.Join(keys, name), kp); err != nil {
			return nil, err
		}
		pairs[i] = kp
	}
	clients := filepath.Join(root, "clients")
	if err := os.WriteFile(clients, []byte("admin keys/admin.pub\n"), 0o600); err != nil {
		return nil, err
	}
	// dbd's metrics tell how the wire phase's requests were grouped into
	// fsyncs. daemon.Run reports only the wire address, so the metrics
	// port is chosen here (another process could take it meanwhile; then
	// the start fails and the bench can be run again).
	metricsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	env := &benchEnv{dbPub: pairs[0].Public, admin: pairs[1], metrics: metricsAddr, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan net.Addr, 1)
	go func() {
		env.done <- daemon.Run(ctx, daemon.Config{
			Data: filepath.Join(root, "dbd"), Listen: "127.0.0.1:0", KeyPath: filepath.Join(keys, "dbd"),
			Clients: clients, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Metrics: metricsAddr, Ready: func(a net.Addr) { ready <- a },
		})
	}()
	select {
	case a := <-ready:
		env.addr = a.String()
		return env, nil
	case err := <-env.done:
		cancel()
		return nil, fmt.Errorf("start dbd: %w", err)
	}
}

func (e *benchEnv) client() (*client.Client, error) {
	return client.New(client.Config{Addr: e.addr, Static: e.admin, Server: e.dbPub,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func (e *benchEnv) stop() {
	e.cancel()
	<-e.done
}

// quietPebble keeps the baseline's Pebble from logging to stderr.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
