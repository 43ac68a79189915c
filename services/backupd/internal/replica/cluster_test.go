package replica_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/backupd/internal/backupdtest"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
)

// cluster is N in-process dbds, each behind a proxy, sharing one backupd
// key, and an in-process Replicator.
type cluster struct {
	t       testing.TB
	names   []string
	dirs    map[string]string
	envs    map[string]*dbdtest.Env
	proxies map[string]*backupdtest.Proxy
	key     wire.KeyPair
	reg     *prometheus.Registry
}

func newCluster(t testing.TB, names ...string) *cluster {
	t.Helper()
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, names: names, dirs: map[string]string{}, envs: map[string]*dbdtest.Env{},
		proxies: map[string]*backupdtest.Proxy{}, key: kp}
	for _, n := range names {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		// dbdtest keeps key files it finds: every site lists the same
		// backupd key.
		if err := wire.WriteKeyFiles(filepath.Join(dir, "keys", "backupd"), kp); err != nil {
			t.Fatal(err)
		}
		c.dirs[n] = dir
		c.envs[n] = dbdtest.Start(t, dbdtest.Options{Dir: dir})
		c.proxies[n] = backupdtest.Start(t, c.envs[n].Addr)
	}
	return c
}

// stop stops site n's dbd (its proxy then refuses to connect).
func (c *cluster) stop(n string) { c.envs[n].Stop() }

// restart starts site n's dbd again on its data and points the proxy at it.
func (c *cluster) restart(n string) {
	c.envs[n] = dbdtest.Start(c.t, dbdtest.Options{Dir: c.dirs[n]})
	c.proxies[n].SetTarget(c.envs[n].Addr)
}

// restoreFrom stops site n's dbd, puts its checkpoint ckpt (written by
// Checkpoint under its data folder) in place of the data folder, as an
// operator restores a backup, and starts the dbd again.
func (c *cluster) restoreFrom(n, ckpt string) {
	c.t.Helper()
	c.stop(n)
	data := filepath.Join(c.dirs[n], "data")
	saved := filepath.Join(c.dirs[n], "checkpoint")
	if err := os.Rename(filepath.Join(data, "checkpoints", ckpt), saved); err != nil {
		c.t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(saved, data); err != nil {
		c.t.Fatal(err)
	}
	c.restart(n)
}

func (c *cluster) config() replica.Config {
	cfg := replica.Config{Key: c.key, Heartbeat: 200 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: testLogger()}
	for _, n := range c.names {
		cfg.Sites = append(cfg.Sites, replica.Site{Name: n, Addr: c.proxies[n].Addr(), Server: c.envs[n].DBKey.Public})
	}
	return cfg
}

// run starts a Replicator with cfg until the returned stop is called (or
// the test ends).
func (c *cluster) run(cfg replica.Config) (stop func()) {
	c.t.Helper()
	c.reg = prometheus.NewRegistry()
	r, err := replica.New(cfg, c.reg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	c.t.Cleanup(stop)
	return stop
}

// admin and smtpd return clients of site n with that role.
func (c *cluster) admin(n string) *client.Client { return c.envs[n].Client("admin") }
func (c *cluster) smtpd(n string) *client.Client { return c.envs[n].Client("smtpd") }

func testLogger() *slog.Logger {
	if os.Getenv("TWINMX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// waitConverged waits until every site's dump is equal and returns it.
func (c *cluster) waitConverged(ctx context.Context) []string {
	c.t.Helper()
	var last string
	for {
		var first []string
		same := true
		for i, n := range c.names {
			d, err := backupdtest.Dump(ctx, c.admin(n))
			if err != nil {
				if ctx.Err() != nil {
					c.t.Fatalf("sites did not converge: %v (last difference: %s)", err, last)
				}
				same = false
				break
			}
			if i == 0 {
				first = d
			} else if diff := backupdtest.Diff(first, d); diff != "" {
				last = fmt.Sprintf("%s vs %s: %s", c.names[0], n, diff)
				same = false
				break
			}
		}
		if same {
			return first
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("sites did not converge: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
