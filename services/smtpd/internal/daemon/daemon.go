// Package daemon runs a complete smtpd: the dbd client, the guarded
// listener, go-smtp with the session backend, and the metrics endpoint,
// until its context ends. cmd/smtpd wires flags to it; tests start it
// in-process.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/smtpd/internal/deliver"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
	"github.com/twinmx/twinmx/services/smtpd/internal/session"
)

// Config is smtpd's configuration. A zero field means its default.
type Config struct {
	Listen   string // HOST:PORT for SMTP. Required.
	Hostname string // our name in the greeting, replies and trace fields. Required.

	DB      string         // dbd's HOST:PORT. Required.
	DBKey   wire.PublicKey // dbd's public key. Required.
	Key     wire.KeyPair   // smtpd's key pair (role smtpd). Required.
	Metrics string         // HOST:PORT for /metrics; "" = none.

	// DecisionWindow is how long a client waits after DATA for the
	// verdict and the backed-up mark. Default 20 s (SPEC §1).
	DecisionWindow time.Duration
	// MinCopies is 2 (strict, default) or 1 (degraded: no backed-up mark
	// needed).
	MinCopies int
	// MaxSize is the message size limit (SIZE). Default 64 MiB.
	MaxSize int64
	// DataMemory bounds the message bytes all sessions hold at once.
	// Default 144 MiB: two messages of the largest size, plus room.
	DataMemory int64
	// MaxRecipients per transaction. Default 100.
	MaxRecipients int
	// MaxHeaderSize bounds a mail's header section in bytes and MaxHops
	// its Received fields (session.DefaultMaxHeaderSize,
	// session.DefaultMaxHops by default; negative: no limit).
	MaxHeaderSize, MaxHops int
	// NoReturnPath: no Return-Path field at delivery (session.Config).
	NoReturnPath bool
	// MailboxTTL is how long a mailbox lookup is remembered (a new
	// mailbox is seen within a fifth of it). Default 5 s; negative: off.
	MailboxTTL time.Duration
	// DBTimeout bounds one dbd request (a mailbox lookup, the store, the
	// acknowledgement), retries across a dbd restart included. After it
	// the client gets 451 4.3.0. Default 10 s.
	DBTimeout time.Duration

	// TLS enables STARTTLS (nil: none).
	TLS *tls.Config
	// Guard holds the stream defences; Hostname, TLS and Logger are
	// filled in by Run.
	Guard guard.Config

	Logger *slog.Logger // default slog.Default()
	// Ready, if set, is called with the SMTP address once smtpd serves.
	Ready func(addr net.Addr)
	// ShutdownGrace is how long sessions may finish at shutdown. Default
	// 30 s: a session waiting for its decision should get its answer.
	ShutdownGrace time.Duration
}

func (c *Config) applyDefaults() {
	if c.DecisionWindow == 0 {
		c.DecisionWindow = 20 * time.Second
	}
	if c.MinCopies == 0 {
		c.MinCopies = 2
	}
	if c.MaxSize == 0 {
		c.MaxSize = 64 << 20
	}
	if c.DataMemory == 0 {
		c.DataMemory = max(144<<20, 2*c.MaxSize+16<<20)
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 100
	}
	if c.DBTimeout == 0 {
		c.DBTimeout = 10 * time.Second
	}
	if c.MailboxTTL == 0 {
		c.MailboxTTL = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"--listen", c.Listen}, {"--hostname", c.Hostname}, {"--db", c.DB},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("smtpd: %s is required", f.name))
		}
	}
	if c.MinCopies < 0 || c.MinCopies > 2 {
		errs = append(errs, fmt.Errorf("smtpd: --min-copies %d: must be 1 or 2", c.MinCopies))
	}
	if c.DecisionWindow < 0 {
		errs = append(errs, fmt.Errorf("smtpd: --decision-window %v is negative", c.DecisionWindow))
	}
	if c.MaxSize < 0 || c.DataMemory < 0 || c.MaxRecipients < 0 {
		errs = append(errs, errors.New("smtpd: size, memory and recipient limits must not be negative"))
	}
	if c.DataMemory > 0 && c.MaxSize > c.DataMemory {
		errs = append(errs, fmt.Errorf("smtpd: --max-size %d exceeds --data-memory %d", c.MaxSize, c.DataMemory))
	}
	return errors.Join(errs...)
}

// Run serves SMTP until ctx ends, then stops accepting, lets sessions finish
// for ShutdownGrace and returns nil. It returns an error if it cannot start.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.applyDefaults()
	log := cfg.Logger

	db, err := client.New(client.Config{Addr: cfg.DB, Static: cfg.Key, Server: cfg.DBKey, Logger: log.With("part", "dbd-client")})
	if err != nil {
		return fmt.Errorf("smtpd: dbd client: %w", err)
	}
	defer db.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	if cfg.TLS != nil {
		reg.MustRegister(tlsconf.ExpiryGauge(cfg.TLS))
	}

	gcfg := cfg.Guard
	gcfg.Hostname, gcfg.TLS = cfg.Hostname, cfg.TLS
	if gcfg.Logger == nil {
		gcfg.Logger = log.With("part", "guard")
	}
	gcfg.OnRefuse = func(reason string) { m.Rejections.WithLabelValues(reason).Inc() }
	// No TCP keepalive on client connections: Go's default turns it on
	// with four setsockopt calls per accepted connection (a new one per
	// mail under smtp-source), and the idle and session timeouts already
	// end a connection whose peer vanished. Postfix's smtpd sets none.
	lc := net.ListenConfig{KeepAlive: -1}
	inner, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("smtpd: listen on %s: %w", cfg.Listen, err)
	}
	ln, err := guard.NewListener(inner, gcfg)
	if err != nil {
		inner.Close()
		return fmt.Errorf("smtpd: %w", err)
	}

	// Sessions finish their decision after ctx ends (until the grace
	// period), so their dbd requests use a context that outlives it.
	sessCtx, stopSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSessions()
	var idb [4]byte
	if _, err := rand.Read(idb[:]); err != nil {
		ln.Close()
		return fmt.Errorf("smtpd: session id prefix: %w", err)
	}
	prefix := hex.EncodeToString(idb[:])
	watcher := deliver.NewWatcher(db, log.With("part", "watcher"))
	go watcher.Run(sessCtx)
	rec := newRecorder(db, prefix, cfg.DBTimeout, log, m)
	be := session.NewBackend(sessCtx, session.Config{
		Hostname:      cfg.Hostname,
		IDPrefix:      prefix,
		Watcher:       watcher,
		MailboxTTL:    max(cfg.MailboxTTL, 0),
		Decision:      deliver.Policy{Window: cfg.DecisionWindow, MinCopies: cfg.MinCopies},
		MaxSize:       cfg.MaxSize,
		MaxHeaderSize: cfg.MaxHeaderSize,
		MaxHops:       cfg.MaxHops,
		NoReturnPath:  cfg.NoReturnPath,
		Budget:        session.NewBudget(cfg.DataMemory),
		DBTimeout:     cfg.DBTimeout,
		Logger:        log,
		Metrics:       m,
		Record:        rec.note,
	}, db)
	srv := smtp.NewServer(be)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxSize
	srv.MaxRecipients = cfg.MaxRecipients
	// guard enforces the command line limit and lets body lines of any
	// length through; go-smtp's own limit would also cut body lines.
	srv.MaxLineLength = 0
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogPrinter{log: log.With("part", "go-smtp"), panics: m.Panics}

	var metricsSrv *http.Server
	if cfg.Metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			ln.Close()
			return fmt.Errorf("smtpd: metrics listen on %s: %w", cfg.Metrics, err)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(mln)
		defer metricsSrv.Close()
	}

	serveErr := make(chan error, 1)
	// The recorder's writes outlive the sessions' ctx: the records of the
	// last connections are written at shutdown, within the grace.
	recCtx, recStop := context.WithCancel(context.WithoutCancel(sessCtx))
	defer recStop()
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		rec.run(recCtx)
	}()
	open := &openConns{}
	go func() { serveErr <- srv.Serve(listener{Listener: ln, rec: rec, open: open}) }()
	log.Info("smtpd serving", "listen", ln.Addr().String(), "hostname", cfg.Hostname, "dbd", cfg.DB,
		"decision_window", cfg.DecisionWindow, "min_copies", cfg.MinCopies, "starttls", cfg.TLS != nil)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("smtpd: serve: %w", err)
	}
	log.Info("smtpd shutting down", "grace", cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	// Shutdown closed the listener before it waited, so Serve returns:
	// no connection is accepted (tracked in open, added to rec.watching)
	// after this.
	<-serveErr
	if shutErr != nil {
		// srv.Close would do nothing now: Shutdown has marked the server
		// closed. Cancel the sessions' work first, so that one waiting
		// for its decision answers 451 rather than acknowledging a mail
		// whose 250 can no longer reach the sender, then cut the
		// connections: an idle one would otherwise hold shutdown until
		// its idle timeout.
		stopSessions()
		log.Warn("sessions cut at shutdown", "err", shutErr, "connections", open.closeAll())
	}
	rec.close()
	select {
	case <-recDone:
	case <-sctx.Done():
		log.Warn("connection records not all written at shutdown")
		recStop()
		<-recDone
	}
	return nil
}

// slogPrinter adapts go-smtp's Printf-style error log to slog. go-smtp
// recovers a panic in a session (answering 421) and reports it only
// through this log, as "panic serving ADDR: VALUE\nSTACK": such a line is
// logged as an error and counted, since each is a bug.
type slogPrinter struct {
	log    *slog.Logger
	panics prometheus.Counter
}

func (p slogPrinter) Printf(format string, v ...any) {
	if strings.HasPrefix(format, "panic serving") {
		p.panics.Inc()
		p.log.Error(fmt.Sprintf(format, v...))
		return
	}
	p.log.Warn(fmt.Sprintf(format, v...))
}

func (p slogPrinter) Println(v ...any) { p.log.Warn(fmt.Sprint(v...)) }
