// Command pop3d is twinmx's POP3 server (SPEC §8): RFC 1939 with CAPA,
// UIDL, TOP, STLS and AUTH PLAIN, reading mailboxes from the local site's
// dbd. UIDLs are the same on both sites. See docs/pop3d.md.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/pop3d/internal/daemon"
	"github.com/twinmx/twinmx/services/pop3d/internal/server"
)

func env(name string) []string { return []string{"TWINMX_POP3D_" + name} }

func main() {
	if err := svc.Run(newApp(), os.Args, svc.Unit{LowPorts: true}); err != nil {
		fmt.Fprintln(os.Stderr, "pop3d:", err)
		os.Exit(1)
	}
}

// newApp is pop3d's command line: flags and the daemon's action.
func newApp() *cli.App {
	return &cli.App{
		Name:  "pop3d",
		Usage: "twinmx POP3 server",
		Flags: append(svc.DBFlags("TWINMX_POP3D", "mailbox"),
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT for POP3 (STLS when TLS is configured)", EnvVars: env("LISTEN")},
			&cli.StringFlag{Name: "tls-listen", Usage: "HOST:PORT for POP3 over implicit TLS (POP3S)", EnvVars: env("TLS_LISTEN")},
			&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: env("METRICS")},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate chain for STLS and POP3S", EnvVars: env("TLS_CERT")},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key for STLS and POP3S", EnvVars: env("TLS_KEY")},
			&cli.BoolFlag{Name: "tls-self-signed", Usage: "TLS with a fresh self-signed certificate (local runs)", EnvVars: env("TLS_SELF_SIGNED")},
			&cli.StringFlag{Name: "hostname", Value: "localhost", Usage: "name in the self-signed certificate", EnvVars: env("HOSTNAME")},
			&cli.BoolFlag{Name: "allow-plaintext", Usage: "allow logins without TLS from any client (off: only from loopback)", EnvVars: env("ALLOW_PLAINTEXT")},
			&cli.DurationFlag{Name: "idle-timeout", Value: server.DefaultIdleTimeout, Usage: "wait for a command", EnvVars: env("IDLE_TIMEOUT")},
			&cli.DurationFlag{Name: "db-timeout", Value: server.DefaultDBTimeout, Usage: "bound on one dbd request", EnvVars: env("DB_TIMEOUT")},
			&cli.DurationFlag{Name: "auth-fail-delay", Value: server.DefaultAuthFailDelay, Usage: "least time before a failed login's reply (negative: none)", EnvVars: env("AUTH_FAIL_DELAY")},
			&cli.DurationFlag{Name: "login-cache", Value: mailbox.DefaultLoginCacheTTL, Usage: "how long a password argon2id confirmed is accepted again without a new check (0: always check)", EnvVars: env("LOGIN_CACHE")},
			&cli.IntFlag{Name: "max-auth-failures", Value: server.DefaultMaxAuthFailures, Usage: "failed logins per client IP within --auth-fail-window before its logins are refused (-1: no limit)", EnvVars: env("MAX_AUTH_FAILURES")},
			&cli.DurationFlag{Name: "auth-fail-window", Value: server.DefaultAuthFailWindow, Usage: "how long a failed login counts", EnvVars: env("AUTH_FAIL_WINDOW")},
			&cli.IntFlag{Name: "max-conns", Value: server.DefaultMaxConns, Usage: "open connections in total (-1: no limit)", EnvVars: env("MAX_CONNS")},
			&cli.IntFlag{Name: "max-conns-per-ip", Value: server.DefaultMaxConnsPerIP, Usage: "open connections per client IP (-1: no limit)", EnvVars: env("MAX_CONNS_PER_IP")},
			&cli.BoolFlag{Name: "debug", Usage: "log every command (never passwords)", EnvVars: []string{"TWINMX_DEBUG"}},
		),
		Action: run,
	}
}

func run(c *cli.Context) error {
	log := svc.Logger(c.Bool("debug"))
	if err := checkFlags(c); err != nil {
		return err
	}
	key, dbPub, err := svc.DBKeys(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	tlsCfg, err := tlsconf.FromFlags(ctx, log, c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed"), c.String("hostname"))
	if err != nil {
		return err
	}
	cfg := daemon.Config{
		Listen: c.String("listen"), TLSListen: c.String("tls-listen"),
		DB: c.String("db"), DBKey: dbPub, Key: key, Metrics: c.String("metrics"), TLS: tlsCfg,
		Server: server.Config{
			AllowPlaintext: c.Bool("allow-plaintext"),
			IdleTimeout:    c.Duration("idle-timeout"), DBTimeout: c.Duration("db-timeout"),
			AuthFailDelay:   c.Duration("auth-fail-delay"),
			MaxAuthFailures: c.Int("max-auth-failures"), AuthFailWindow: c.Duration("auth-fail-window"),
			MaxConns: c.Int("max-conns"), MaxConnsPerIP: c.Int("max-conns-per-ip"),
		},
		LoginCacheTTL: c.Duration("login-cache"),
		Logger:        log,
		Ready:         func(_, _, _ net.Addr) { svc.Ready() },
	}
	if cfg.Server.AuthFailDelay == 0 {
		cfg.Server.AuthFailDelay = -1 // 0 on the command line means none, not "default"
	}
	if cfg.LoginCacheTTL == 0 {
		cfg.LoginCacheTTL = -1 // likewise
	}
	return daemon.Run(ctx, cfg)
}

// checkFlags refuses values the server would silently replace or read
// otherwise than the help and docs/pop3d.md say, naming the flag (as
// smtpd's checkFlags). server.Config reads a zero as "the default":
// --idle-timeout 0 waited 10 minutes, --db-timeout 0 30 s,
// --auth-fail-window 0 15 minutes, --max-auth-failures 0 allowed 10 and
// --max-conns 0 1000 connections. A negative timeout or window was
// refused by the server without naming the flag, and a negative
// --login-cache was "every login is checked".
func checkFlags(c *cli.Context) error {
	var errs []error
	for _, f := range []string{"idle-timeout", "db-timeout", "auth-fail-window"} {
		if d := c.Duration(f); d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: must be above 0", f, d))
		}
	}
	if d := c.Duration("login-cache"); d < 0 {
		errs = append(errs, fmt.Errorf("--login-cache %v: must not be negative (0: every login is checked)", d))
	}
	for _, f := range []string{"max-auth-failures", "max-conns", "max-conns-per-ip"} {
		if c.Int(f) == 0 {
			errs = append(errs, fmt.Errorf("--%s 0: must be above 0, or -1 for no limit", f))
		}
	}
	if err := tlsconf.CheckFlags(c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
