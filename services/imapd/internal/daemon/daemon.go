// Package daemon runs one imapd: the dbd client, the IMAP listeners
// (plain with STARTTLS, and implicit TLS), metrics, and shutdown. It is
// used by cmd/imapd and by tests.
package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/connlimit"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/imapd/internal/compress"
	"github.com/twinmx/twinmx/services/imapd/internal/inflate"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// Config configures Run. Zero values mean the defaults.
type Config struct {
	Listen    string // HOST:PORT for IMAP with STARTTLS; required unless TLSListen is set
	TLSListen string // HOST:PORT for IMAP over implicit TLS (993); default off
	DB        string // dbd HOST:PORT; required
	DBKey     wire.PublicKey
	Key       wire.KeyPair // role mailbox
	Metrics   string       // HOST:PORT for /metrics; default off
	// TLS is the certificate configuration for STARTTLS and TLSListen;
	// nil offers no TLS (then only loopback clients may log in, unless
	// AllowPlaintext).
	TLS            *tls.Config
	AllowPlaintext bool // let any client log in without TLS; default false
	// PlaintextFrom reports whether a client at an address may log in
	// without TLS (default: loopback addresses, session.IsLoopback).
	// Tests set it to see a loopback client as a remote one.
	PlaintextFrom func(net.Addr) bool
	// MaxAuthFailures failed logins per client IP within AuthFailWindow
	// refuse its further logins (0: the default 10; < 0: no limit).
	MaxAuthFailures int
	AuthFailWindow  time.Duration // default 15 minutes
	AuthFailDelay   time.Duration // least time before a failed login's answer; default 2s, < 0: none
	// LoginCacheTTL is how long a confirmed password is taken again
	// without an argon2id check; default mailbox.DefaultLoginCacheTTL,
	// negative: never.
	LoginCacheTTL time.Duration
	DBTimeout     time.Duration // bound on one dbd call; default 30s
	// MaxConns and MaxConnsPerIP bound the open connections in total and
	// from one client IP (0: the defaults 1000 and 50; < 0: no limit).
	// A client over a limit gets BYE and is closed before go-imap sees it.
	MaxConns, MaxConnsPerIP int
	// IdleKeepalive is how often a quiet IDLE repeats the message count
	// (0: every 2 minutes).
	IdleKeepalive time.Duration
	// PreAuthTimeout is how long a connection that has not logged in may
	// be silent, or take to send one command, before it is closed. It can
	// only shorten go-imap's own bound, which is 30 s and also the default
	// (0). TEST-CATALOG 51.
	PreAuthTimeout time.Duration
	// Now is the clock that stamps flag, folder and move changes (default
	// time.Now). Stamps are Lamport-style (never below what they replace),
	// so a server whose clock is behind still overrides a change it has
	// seen; tests skew it to check that (TestClockSkewBetweenServers).
	Now func() time.Time
	// AppendMemory is the bytes of APPENDed mails all sessions may hold at
	// once, taken as literals arrive (0: session.DefaultAppendMemory; at
	// least 81 MiB, one mail of the APPENDLIMIT at its peak).
	AppendMemory int64
	// AppendMemoryPerAccount is how much of AppendMemory the sessions of
	// one account may hold at once, so that one account opening many
	// connections cannot hold it all (0:
	// session.DefaultAppendMemoryPerAccount, 81 MiB; < 0: no share).
	// Validate refuses less than 81 MiB or more than AppendMemory.
	AppendMemoryPerAccount int64
	// AppendWait is how long an APPEND waits for room in AppendMemory or
	// in its account's share (0: DBTimeout).
	AppendWait time.Duration
	// CacheBytes bounds the parsed mails all sessions share (what folder
	// listings fetch: ENVELOPE, BODYSTRUCTURE, sizes, header fields; see
	// package mailcache), in estimated heap bytes (0: DefaultCacheBytes;
	// < 0: no cache).
	CacheBytes int64
	// BodyCacheBytes is the memory for whole mails kept for BODY[],
	// reserved at start (0: none; imapd's flag defaults to
	// DefaultBodyCacheBytes).
	BodyCacheBytes int64
	// CompressSessions bounds the sessions with COMPRESS=DEFLATE active
	// at once (0: COMPRESS not offered; imapd's flag defaults to
	// DefaultCompressSessions). Past it, COMPRESS is answered NO and the
	// session goes on uncompressed.
	CompressSessions int
	Logger           *slog.Logger // default: discard
	// Debug writes the raw IMAP traffic (passwords included!) to the log
	// writer; for local debugging only.
	Debug bool
	// Ready, if set, is called with the bound addresses (nil when off)
	// once imapd accepts connections.
	Ready func(plain, tls net.Addr)
	// Registry, if set, receives the metrics (tests); default a new one.
	Registry *prometheus.Registry

	// onConn, if set, sees each accepted connection (tests in this
	// package: the read deadlines go-imap sets).
	onConn func(*countingConn)
	// wrapStore, if set, puts a store in front of the one over dbd (tests
	// in this package: a watch whose events come late).
	wrapStore func(session.Store) session.Store
	// onCache, if set, sees the mail cache (nil when off): benchmarks in
	// this package empty it to measure a cold FETCH.
	onCache func(*mailcache.Cache)
}

// Validate reports every problem of cfg at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" && c.TLSListen == "" {
		errs = append(errs, errors.New("imapd: --listen or --tls-listen is required"))
	}
	if c.TLSListen != "" && c.TLS == nil {
		errs = append(errs, errors.New("imapd: --tls-listen needs --tls-cert/--tls-key or --tls-self-signed"))
	}
	if c.DB == "" {
		errs = append(errs, errors.New("imapd: --db is required"))
	}
	// An account's share is checked, not corrected as AppendMemory is
	// (raised to its least): a share below one mail of the APPENDLIMIT
	// would refuse mails the server advertises it takes, and one above
	// the pool is no share at all, so either is a mistake to report.
	if p := c.AppendMemoryPerAccount; p > 0 {
		total, _ := session.AppendMemoryBounds(c.AppendMemory, p)
		if p < session.MinAppendMemory {
			errs = append(errs, fmt.Errorf("imapd: --append-memory-per-account %d is less than %d (81 MiB: one mail of the APPENDLIMIT at its peak)", p, session.MinAppendMemory))
		}
		if p > total {
			errs = append(errs, fmt.Errorf("imapd: --append-memory-per-account %d is more than --append-memory %d (-1: no share)", p, total))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DBTimeout <= 0 {
		c.DBTimeout = 30 * time.Second
	}
	if c.PlaintextFrom == nil {
		c.PlaintextFrom = session.IsLoopback
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
}

// DefaultCacheBytes is the mail cache's default budget: some 15,000
// parsed mails of typical size (about 4 KiB each, most of it the header).
const DefaultCacheBytes = 64 << 20

// DefaultBodyCacheBytes is --body-cache-mb's default: a client reading
// the whole mails of a folder again (a second FETCH BODY[], mutt without
// its own cache, a webmail) costs imapd a third of the CPU and dbd none
// (docs/imapd.md "Body cache"). The memory is reserved at start.
const DefaultBodyCacheBytes = 32 << 20

// DefaultCompressSessions is --compress-sessions' default: each deflater
// holds about 0.8 MiB, so at most some 80 MiB.
const DefaultCompressSessions = 100

// Connection limits by default. Per IP it is higher than smtpd's and
// pop3d's: a mail client keeps several IMAP connections open (one per
// folder it watches), and an office behind one NAT address has many.
const (
	DefaultMaxConns      = 1000
	DefaultMaxConnsPerIP = 50
)

// caps is what imapd advertises (IMAP4rev1 plus what the sessions back;
// go-imap adds IDLE, UNSELECT, ENABLE, STARTTLS and AUTH=PLAIN itself).
// ESEARCH (RFC 4731): Session.Search fills MIN, MAX and COUNT besides ALL.
// BINARY (RFC 3516): Session.Fetch decodes parts (IMAP4rev2 clients had it
// already; compared with Dovecot in services/imapd/test).
var caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapSpecialUse: {},
	imap.CapChildren: {}, imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {},
	imap.CapNamespace: {}, imap.CapESearch: {}, imap.CapIMAP4rev2: {}, imap.CapID: {}, imap.CapBinary: {}}

// Run serves IMAP until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.applyDefaults()
	log := cfg.Logger
	db, err := client.New(client.Config{Addr: cfg.DB, Static: cfg.Key, Server: cfg.DBKey, Logger: log.With("part", "dbd-client")})
	if err != nil {
		return fmt.Errorf("imapd: dbd client: %w", err)
	}
	defer db.Close()
	m := metrics.New(cfg.Registry)
	if cfg.TLS != nil {
		cfg.Registry.MustRegister(tlsconf.ExpiryGauge(cfg.TLS))
	}

	sessCtx, stopSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSessions()
	cache, err := mailcache.New(mailcache.Config{ParsedBytes: cfg.CacheBytes, BodyBytes: cfg.BodyCacheBytes, Metrics: m})
	if err != nil {
		return fmt.Errorf("imapd: %w", err)
	}
	if cfg.onCache != nil {
		cfg.onCache(cache)
	}
	var st session.Store = store.New(db, mailbox.Options{LoginCacheTTL: cfg.LoginCacheTTL})
	if cfg.wrapStore != nil {
		st = cfg.wrapStore(st)
	}
	be := session.NewBackend(sessCtx, session.Config{
		Store: st, Logger: log, Metrics: m,
		AllowPlaintext: cfg.AllowPlaintext, PlaintextFrom: cfg.PlaintextFrom, DBTimeout: cfg.DBTimeout, IdleKeepalive: cfg.IdleKeepalive, AppendMemory: cfg.AppendMemory, AppendMemoryPerAccount: cfg.AppendMemoryPerAccount, AppendWait: cfg.AppendWait, Now: cfg.Now,
		AuthLimit:     mailbox.NewAuthLimiter(cmp.Or(cfg.MaxAuthFailures, 10), cmp.Or(cfg.AuthFailWindow, 15*time.Minute)),
		AuthFailDelay: cmp.Or(cfg.AuthFailDelay, 2*time.Second),
		Cache:         cache,
	})
	opts := imapserver.Options{
		NewSession: be.NewSession, Caps: caps, TLSConfig: cfg.TLS, ID: &imap.IDData{Name: "twinmx"},
		SearchCharset: session.SearchCharset,
		Logger:        printer{log.With("part", "go-imap")},
	}
	if cfg.CompressSessions > 0 {
		opts.Compress = compress.New(cfg.CompressSessions, m.Compressed).Deflater
		opts.Inflate = inflate.NewReader
	}
	if cfg.Debug {
		opts.DebugWriter = debugWriter{log}
	}
	// Two servers differ only in go-imap's InsecureAuth: clients that may
	// log in without TLS (loopback, or everyone with AllowPlaintext) get
	// AUTH=PLAIN at once, the others LOGINDISABLED until STARTTLS.
	strict := imapserver.New(&opts)
	lax := opts
	lax.InsecureAuth = true
	trusted := imapserver.New(&lax)

	var wg sync.WaitGroup
	conns := &registry{conns: map[*countingConn]struct{}{}}
	limit := connlimit.New(cfg.MaxConns, cfg.MaxConnsPerIP)
	serveErr := make(chan error, 4) // one per Serve call: none blocks at shutdown
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	var plainAddr, tlsAddr net.Addr
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("imapd: listen on %s: %w", cfg.Listen, err)
		}
		lns, plainAddr = append(lns, ln), ln.Addr()
		d := newDispatcher(ln, m, conns, limit, nil, log, func(c net.Conn) bool {
			return cfg.AllowPlaintext || cfg.PlaintextFrom(c.RemoteAddr())
		})
		d.preAuth, d.onConn = cfg.PreAuthTimeout, cfg.onConn
		wg.Add(3)
		go func() { defer wg.Done(); d.run() }()
		go func() { defer wg.Done(); serveErr <- strict.Serve(d.strict) }()
		go func() { defer wg.Done(); serveErr <- trusted.Serve(d.trusted) }()
	}
	if cfg.TLSListen != "" {
		ln, err := net.Listen("tcp", cfg.TLSListen)
		if err != nil {
			closeAll()
			return fmt.Errorf("imapd: listen on %s: %w", cfg.TLSListen, err)
		}
		lns, tlsAddr = append(lns, ln), ln.Addr()
		d := newDispatcher(ln, m, conns, limit, cfg.TLS, log, func(net.Conn) bool { return false })
		d.preAuth, d.onConn = cfg.PreAuthTimeout, cfg.onConn
		wg.Add(3)
		go func() { defer wg.Done(); d.run() }()
		go func() { defer wg.Done(); serveErr <- strict.Serve(d.strict) }()
		go func() { defer wg.Done(); serveErr <- trusted.Serve(d.trusted) }()
	}
	if cfg.Metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			closeAll()
			return fmt.Errorf("imapd: metrics listen on %s: %w", cfg.Metrics, err)
		}
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		defer msrv.Close()
	}
	log.Info("imapd serving", "listen", cfg.Listen, "tls_listen", cfg.TLSListen, "dbd", cfg.DB,
		"starttls", cfg.TLS != nil, "allow_plaintext", cfg.AllowPlaintext)
	if cfg.Ready != nil {
		cfg.Ready(plainAddr, tlsAddr)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			runErr = fmt.Errorf("imapd: serve: %w", err)
		}
	}
	log.Info("imapd shutting down")
	// Not Server.Close: in go-imap v2.0.0-beta.8 it races with a Serve
	// that has not started yet. Closing the listeners ends Serve; closing
	// the tracked connections ends their sessions.
	closeAll()
	wg.Wait()
	conns.closeAll()
	stopSessions()
	return runErr
}

// printer adapts go-imap's Printf logger to slog.
type printer struct{ log *slog.Logger }

func (p printer) Printf(format string, v ...any) { p.log.Warn(fmt.Sprintf(format, v...)) }

// debugWriter logs raw protocol traffic at debug level.
type debugWriter struct{ log *slog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug("imap trace", "data", string(p))
	return len(p), nil
}
