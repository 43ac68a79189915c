// Package daemon wires one running pop3d: the dbd client, the mailbox
// store, the POP3 server on its listeners (plain with STLS, implicit TLS)
// and the metrics endpoint. It is used by cmd/pop3d and the tests.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/pop3d/internal/metrics"
	"github.com/twinmx/twinmx/services/pop3d/internal/server"
)

// DefaultShutdownGrace is how long Run lets commands in progress finish
// after its ctx ends.
const DefaultShutdownGrace = 10 * time.Second

// Config is one pop3d.
type Config struct {
	Listen    string // HOST:PORT for POP3 with STLS. Required unless TLSListen is set.
	TLSListen string // HOST:PORT for implicit TLS (POP3S); "" = none. Needs TLS.
	DB        string // dbd HOST:PORT. Required.
	DBKey     wire.PublicKey
	Key       wire.KeyPair // pop3d's key (role mailbox)
	Metrics   string       // HOST:PORT for /metrics; "" = none
	TLS       *tls.Config  // nil: no STLS and no TLSListen
	// Server holds the protocol settings; its Store, Logger and Metrics
	// are set by Run.
	Server server.Config
	// LoginCacheTTL is how long a confirmed password is taken again
	// without an argon2id check; default mailbox.DefaultLoginCacheTTL,
	// negative: never.
	LoginCacheTTL time.Duration
	// ShutdownGrace default DefaultShutdownGrace.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
	// Ready, if set, is called with the bound addresses (plain, TLS,
	// metrics; nil when off) once everything listens.
	Ready func(plain, tls, metrics net.Addr)
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" && c.TLSListen == "" {
		errs = append(errs, errors.New("pop3d: a listen address is required (--listen or --tls-listen)"))
	}
	if c.TLSListen != "" && c.TLS == nil {
		errs = append(errs, errors.New("pop3d: --tls-listen needs a certificate (--tls-cert/--tls-key or --tls-self-signed)"))
	}
	if c.DB == "" {
		errs = append(errs, errors.New("pop3d: --db is required"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("pop3d: Logger is required"))
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends, then shuts down (new commands are refused at
// once, commands in progress get ShutdownGrace).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	log := cfg.Logger
	db, err := client.New(client.Config{Addr: cfg.DB, Static: cfg.Key, Server: cfg.DBKey, Logger: log.With("part", "dbd-client")})
	if err != nil {
		return fmt.Errorf("pop3d: dbd client: %w", err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.TLS != nil {
		reg.MustRegister(tlsconf.ExpiryGauge(cfg.TLS))
	}
	sc := cfg.Server
	sc.Store, sc.Logger, sc.Metrics, sc.TLS = server.NewDBStore(db, mailbox.Options{LoginCacheTTL: cfg.LoginCacheTTL}), log, metrics.New(reg), cfg.TLS
	srv, err := server.New(sc)
	if err != nil {
		return fmt.Errorf("pop3d: %w", err)
	}

	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	listen := func(addr string) (net.Addr, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("pop3d: listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
		return ln.Addr(), nil
	}
	plainAddr, err := listen(cfg.Listen)
	if err != nil {
		return err
	}
	tlsAddr, err := listen(cfg.TLSListen)
	if err != nil {
		closeAll()
		return err
	}
	metricsAddr, err := listen(cfg.Metrics)
	if err != nil {
		closeAll()
		return err
	}

	errc := make(chan error, 3)
	served := 0
	if plainAddr != nil {
		served++
		go func(ln net.Listener) { errc <- srv.Serve(ln, server.Plain) }(lns[0])
	}
	if tlsAddr != nil {
		served++
		go func(ln net.Listener) { errc <- srv.Serve(ln, server.ImplicitTLS) }(lns[served-1])
	}
	var metricsSrv *http.Server
	if metricsAddr != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(lns[len(lns)-1])
		defer metricsSrv.Close()
	}
	log.Info("pop3d running", "listen", cfg.Listen, "tls-listen", cfg.TLSListen, "db", cfg.DB,
		"stls", cfg.TLS != nil, "allow-plaintext", sc.AllowPlaintext)
	if cfg.Ready != nil {
		cfg.Ready(plainAddr, tlsAddr, metricsAddr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		served--
		runErr = fmt.Errorf("pop3d: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: closed connections still busy", "err", err)
	}
	for ; served > 0; served-- {
		<-errc
	}
	log.Info("pop3d stopped")
	return runErr
}
