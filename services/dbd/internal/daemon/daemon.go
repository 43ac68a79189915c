// Package daemon runs a complete dbd: keys, clients file, store, wire
// server and metrics endpoint, until its context ends. cmd/dbd wires flags
// to it; dbctl bench and tests start it in-process.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/metrics"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
)

// Config is dbd's configuration. A zero field means its default.
type Config struct {
	Data    string // data folder. Required.
	Listen  string // HOST:PORT for the wire protocol. Required.
	KeyPath string // dbd's secret key file (KeyPath.pub beside it). Required.
	// OldKeyPaths are older secret key files of dbd still accepted while
	// clients move to KeyPath's public key (docs/roles.md §7).
	OldKeyPaths []string
	Clients     string // clients file: "ROLE PATH-TO-PUBKEY [not-after=WHEN]" per line. Required.
	Metrics     string // HOST:PORT for /metrics; "" = none.
	// Site names this dbd's counter slot. Default: the first 8 bytes of
	// its public key in hex, unique without configuration.
	Site string
	// CacheMiB is Pebble's block cache in MiB. Default 64.
	CacheMiB int
	// RowCacheMiB is the row cache for readers of whole mails in MiB
	// (store.Options.RowCacheSize). Default 32; -1: none.
	RowCacheMiB int
	// MemTableMiB is Pebble's memtable in MiB. Default 4 (Pebble's).
	MemTableMiB int
	// ReloadInterval is how often the clients file is checked for changes
	// (it is also reloaded on SIGHUP). Default 5 s.
	ReloadInterval time.Duration
	// ShutdownGrace is how long requests in flight may finish at shutdown.
	// Default 10 s.
	ShutdownGrace time.Duration
	// NoSpaceWait bounds how long dbd keeps running, answering no-space,
	// after its store failed because the disk is full; then it exits (1)
	// however full the disk is, so that its supervisor restarts it.
	// Default 15 minutes.
	NoSpaceWait time.Duration
	// NoSpaceFree is the free space in the data folder's file system at
	// which dbd, its store failed for lack of space, exits (1) to be
	// restarted. Default: twice the memtable, 64 MiB at least, or an
	// eighth of the file system if that is less.
	NoSpaceFree uint64
	Logger      *slog.Logger // default slog.Default()
	// Ready, if set, is called with the listening address once dbd serves.
	Ready func(addr net.Addr)
	// Server holds protocol limits; its key, clients, store, logger and
	// metrics fields are filled in by Run.
	Server server.Config
}

func (c *Config) applyDefaults() {
	if c.ReloadInterval == 0 {
		c.ReloadInterval = 5 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.NoSpaceWait == 0 {
		c.NoSpaceWait = defaultNoSpaceWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"--data", c.Data}, {"--listen", c.Listen}, {"--key", c.KeyPath}, {"--clients", c.Clients},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if c.CacheMiB < 0 {
		errs = append(errs, fmt.Errorf("--cache %d: want a size in MiB (0: the default)", c.CacheMiB))
	}
	if c.RowCacheMiB < -1 || c.RowCacheMiB > store.MaxRowCacheSize>>20 {
		errs = append(errs, fmt.Errorf("--row-cache %d: want a size in MiB up to %d (0: the default, -1: none)", c.RowCacheMiB, store.MaxRowCacheSize>>20))
	}
	if c.MemTableMiB < 0 || c.MemTableMiB > store.MaxMemTableSize>>20 {
		errs = append(errs, fmt.Errorf("--memtable %d: want a size in MiB up to %d (0: the default)", c.MemTableMiB, store.MaxMemTableSize>>20))
	}
	return errors.Join(errs...)
}

// Run runs dbd until ctx ends (clean shutdown, nil error) or storage fails
// (error: the process must exit non-zero and be restarted). After a
// failure for lack of space it returns only once there is free space
// again, NoSpaceWait has passed or ctx ends (see afterFailure).
func Run(ctx context.Context, cfg Config) error {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	kp, err := wire.LoadKeyPair(cfg.KeyPath)
	if err != nil {
		return fmt.Errorf("load dbd key: %w", err)
	}
	var previous []wire.KeyPair
	for _, p := range cfg.OldKeyPaths {
		old, err := wire.LoadKeyPair(p)
		if err != nil {
			return fmt.Errorf("load old dbd key: %w", err)
		}
		previous = append(previous, old)
		log.Warn("accepting clients that pin an old dbd key: remove --old-key once every client has the new one",
			"old", old.Public.String(), "key", kp.Public.String())
	}
	// Digest before loading: if the file changes in between, the reload
	// loop sees a difference and loads it again (never the other way round).
	clientsDigest := fileDigest(cfg.Clients)
	clients, err := auth.LoadClients(cfg.Clients)
	if err != nil {
		return err
	}
	warnExpiring(log, clients, time.Now())
	site := cfg.Site
	if site == "" {
		site = hex.EncodeToString(kp.Public[:8])
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	st, err := store.Open(store.Options{Dir: cfg.Data, Site: site, Logger: log, OnCommit: m.OnCommit,
		CacheSize: int64(cfg.CacheMiB) << 20, MemTableSize: int64(cfg.MemTableMiB) << 20, RowCacheSize: rowCacheBytes(cfg.RowCacheMiB)})
	if err != nil {
		return err
	}
	defer st.Close()
	reg.MustRegister(metrics.NewPebbleCollector(st.Metrics), metrics.L6Filters(st.L6Filters))
	reg.MustRegister(metrics.RowCache(st.RowCacheStats)...)
	reg.MustRegister(metrics.Armed(st.ArmStats)...)

	scfg := cfg.Server
	scfg.Static, scfg.Previous, scfg.Clients, scfg.Store, scfg.Logger, scfg.Metrics = kp, previous, clients, st, log, m
	srv, err := server.New(scfg)
	if err != nil {
		return err
	}
	// New starts the server's expiry goroutine: a start that fails
	// below (the port or the metrics port taken) must end it too, or
	// every failed start in a process (dbdtest, dbctl bench) leaks it.
	// After Shutdown or Close this returns at once.
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var msrv *http.Server
	if cfg.Metrics != "" {
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen for metrics on %s: %w", cfg.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics endpoint failed", "err", err)
			}
		}()
		defer msrv.Close()
	}
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- srv.Serve(ln)
	}()
	// SIGHUP is caught before dbd serves, so an early one cannot kill it.
	hup := make(chan os.Signal, 1)
	notifyHangup(hup)
	defer signal.Stop(hup)
	rctx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.ReloadInterval)
		defer t.Stop()
		reloadClients(rctx, newClientsReloader(cfg.Clients, srv, log, clientsDigest), t.C, hup)
	}()
	log.Info("dbd serving", "listen", ln.Addr().String(), "site", site, "clients", clients.Len(), "data", cfg.Data)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	var runErr error
	drain := true // Shutdown (answer what is in flight), not Close
	select {
	case <-ctx.Done():
		log.Info("dbd shutting down")
	case <-st.Failed():
		runErr = fmt.Errorf("storage failed: %w", st.Err())
		drain = afterFailure(ctx, cfg, st, serveErr)
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
		drain = false
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if drain {
		srv.Shutdown(sctx)
	} else {
		srv.Close()
	}
	stopReload()
	return runErr
}

// afterFailure runs once the store st has failed, while the wire
// server still runs, and returns when dbd should exit; drain reports
// whether requests in flight may still be answered (Shutdown) rather than
// cut (Close). Most failures end dbd at once. A full disk does not: dbd
// keeps serving, so that every client learns why its write failed
// (no-space, docs/wire.md §5.7) instead of seeing a broken connection,
// until there is room for a restart (docs/dbd.md, Disk faults). That is
// safe: the failed store refuses every request, so nothing is
// acknowledged, and only a restart recovers (from the WAL): Pebble keeps
// its WAL error, and after a failed fsync the kernel may have dropped the
// data.
func afterFailure(ctx context.Context, cfg Config, st *store.Store, serveErr <-chan error) (drain bool) {
	if !store.OutOfSpace(st.Err()) {
		return false
	}
	cfg.Logger.Error("disk full: answering no-space until there is free space again, then exiting for a restart",
		"data", cfg.Data, "wait_at_most", cfg.NoSpaceWait)
	w := spaceWait{dir: cfg.Data, need: cfg.NoSpaceFree, room: restartRoom(st.MemTableSize()), bound: cfg.NoSpaceWait, poll: spacePoll,
		free: diskSpace, log: cfg.Logger}
	res := w.run(ctx, serveErr)
	if res == spaceTimeout {
		cfg.Logger.Error("disk still full; exiting for a restart", "data", cfg.Data, "waited", cfg.NoSpaceWait)
	}
	// Cut at once only if the wire server itself ended.
	return res != spaceStopped || ctx.Err() != nil
}

// clientSetter takes a new list of clients (server.Server).
type clientSetter interface {
	SetClients(*auth.Clients)
}

// reloadClients reloads the clients file on SIGHUP and when a check (each
// tick) finds its content changed; see clientsReloader.
func reloadClients(ctx context.Context, r *clientsReloader, tick <-chan time.Time, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload()
		case <-tick:
			r.check()
		}
	}
}

// clientsReloader reloads the clients file when its content changes
// (compared by digest: a modification time can stay the same across a
// quick rewrite). A change is taken only once two checks in a row find
// the same new content: a file rewritten in place (os.WriteFile, many
// editors) is empty or half-written for a moment, and a list read then
// would close the sessions of every key it lacks. The content parsed is
// the content compared. A bad file is logged and ignored: the old list
// stays in force.
type clientsReloader struct {
	path string
	set  clientSetter
	log  *slog.Logger
	last [32]byte // the content in force (or last refused)
	seen [32]byte // the content the latest check found
}

func newClientsReloader(path string, set clientSetter, log *slog.Logger, loaded [32]byte) *clientsReloader {
	return &clientsReloader{path: path, set: set, log: log, last: loaded, seen: loaded}
}

// check reads the file and takes it if the check before found the same
// changed content.
func (r *clientsReloader) check() {
	content, err := os.ReadFile(r.path)
	d := digest(content, err)
	if d == r.last || d != r.seen {
		r.seen = d // unchanged, or changed since the last check: look again at the next
		return
	}
	r.last = d
	r.take(content, err)
}

// reload reads and takes the file at once (SIGHUP: the operator says it
// is complete).
func (r *clientsReloader) reload() {
	content, err := os.ReadFile(r.path)
	r.last = digest(content, err)
	r.seen = r.last
	r.take(content, err)
}

func (r *clientsReloader) take(content []byte, readErr error) {
	if readErr != nil {
		r.log.Error("reload clients file; keeping the old list", "err", fmt.Errorf("read clients file: %w", readErr))
		return
	}
	c, err := auth.ParseClientsFile(r.path, content)
	if err != nil {
		r.log.Error("reload clients file; keeping the old list", "err", err)
		return
	}
	r.set.SetClients(c)
	r.log.Info("clients file reloaded", "clients", c.Len())
	warnExpiring(r.log, c, time.Now())
}

// warnExpiring logs the listed keys that have expired or expire within
// auth.ExpiryWarning, so a load or reload shows what will soon be refused.
func warnExpiring(log *slog.Logger, c *auth.Clients, now time.Time) {
	for _, cl := range c.WithNotAfter() {
		switch {
		case cl.Expired(now):
			log.Warn("client key past its not-after: its handshakes are refused", "key_file", cl.Name, "role", cl.Role, "not_after", cl.NotAfter)
		case cl.NotAfter.Sub(now) < auth.ExpiryWarning:
			log.Warn("client key expires soon: rotate it (docs/roles.md §7)", "key_file", cl.Name, "role", cl.Role, "not_after", cl.NotAfter,
				"left", cl.NotAfter.Sub(now).Round(time.Minute).String())
		}
	}
}

// fileDigest returns the SHA-256 of a file's content (zero if unreadable).
func fileDigest(path string) [32]byte {
	return digest(os.ReadFile(path))
}

// digest returns the SHA-256 of content read, zero after a read error.
func digest(content []byte, err error) [32]byte {
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(content)
}

// rowCacheBytes is the store's RowCacheSize for --row-cache MiB: -1 (none)
// stays negative.
func rowCacheBytes(mib int) int64 {
	if mib < 0 {
		return -1
	}
	return int64(mib) << 20
}
