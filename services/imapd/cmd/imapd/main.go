// Command imapd is twinmx's IMAP server (SPEC §8): the mail of an
// account's mailboxes over IMAP4rev1 with IDLE and UIDPLUS, flags that
// merge across the two sites, and UIDVALIDITY tied to the store so that a
// failover makes clients resynchronise. See docs/imapd.md.
package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/imapd/internal/daemon"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
)

func env(name string) []string { return []string{"TWINMX_IMAPD_" + name} }

func main() {
	if err := svc.Run(newApp(), os.Args, svc.Unit{LowPorts: true}); err != nil {
		fmt.Fprintln(os.Stderr, "imapd:", err)
		os.Exit(1)
	}
}

// newApp is imapd's command line: flags and the daemon's action.
func newApp() *cli.App {
	return &cli.App{
		Name:  "imapd",
		Usage: "twinmx IMAP server",
		Flags: append(svc.DBFlags("TWINMX_IMAPD", "mailbox"),
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT for IMAP with STARTTLS (143)", EnvVars: env("LISTEN")},
			&cli.StringFlag{Name: "tls-listen", Usage: "HOST:PORT for IMAP over implicit TLS (993); empty: off", EnvVars: env("TLS_LISTEN")},
			&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: env("METRICS")},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate chain for STARTTLS and --tls-listen", EnvVars: env("TLS_CERT")},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key for STARTTLS and --tls-listen", EnvVars: env("TLS_KEY")},
			&cli.BoolFlag{Name: "tls-self-signed", Usage: "use a fresh self-signed certificate (local runs only)", EnvVars: env("TLS_SELF_SIGNED")},
			&cli.StringFlag{Name: "hostname", Value: "localhost", Usage: "name in the self-signed certificate", EnvVars: env("HOSTNAME")},
			&cli.BoolFlag{Name: "allow-plaintext", Usage: "let clients on any address log in without TLS (off: only from loopback)", EnvVars: env("ALLOW_PLAINTEXT")},
			&cli.DurationFlag{Name: "db-timeout", Value: 30 * time.Second, Usage: "bound on one dbd request", EnvVars: env("DB_TIMEOUT")},
			&cli.IntFlag{Name: "max-auth-failures", Value: 10, Usage: "failed logins per client IP within --auth-fail-window before its logins are refused (-1: no limit)", EnvVars: env("MAX_AUTH_FAILURES")},
			&cli.DurationFlag{Name: "auth-fail-window", Value: 15 * time.Minute, Usage: "how long a failed login counts", EnvVars: env("AUTH_FAIL_WINDOW")},
			&cli.DurationFlag{Name: "login-cache", Value: mailbox.DefaultLoginCacheTTL, Usage: "how long a password argon2id confirmed is accepted again without a new check (0: always check)", EnvVars: env("LOGIN_CACHE")},
			&cli.DurationFlag{Name: "auth-fail-delay", Value: 2 * time.Second, Usage: "least time before a failed login's reply (0 or negative: none)", EnvVars: env("AUTH_FAIL_DELAY")},
			&cli.Int64Flag{Name: "append-memory", Value: session.DefaultAppendMemory, Usage: "bytes of APPENDed mails all sessions may hold at once (at least 81 MiB: one mail of the 64 MiB APPENDLIMIT at its peak; taken as literals arrive)", EnvVars: env("APPEND_MEMORY")},
			&cli.Int64Flag{Name: "append-memory-per-account", Value: session.DefaultAppendMemoryPerAccount, Usage: "bytes of --append-memory the sessions of one account may hold at once (81 MiB up to --append-memory; -1: no share); an APPEND over it waits for the account's others, then gets NO [LIMIT]", EnvVars: env("APPEND_MEMORY_PER_ACCOUNT")},
			&cli.Int64Flag{Name: "cache-mb", Value: daemon.DefaultCacheBytes >> 20, Usage: "MiB of parsed mails (ENVELOPE, BODYSTRUCTURE, header fields) kept for folder listings, shared by all sessions (0: no cache)", EnvVars: env("CACHE_MB")},
			&cli.Int64Flag{Name: "body-cache-mb", Value: daemon.DefaultBodyCacheBytes >> 20, Usage: "MiB of whole mails kept for BODY[] read again, shared by all sessions, reserved at start (0: none)", EnvVars: env("BODY_CACHE_MB")},
			&cli.IntFlag{Name: "compress-sessions", Value: daemon.DefaultCompressSessions, Usage: "offer COMPRESS=DEFLATE (RFC 4978) to this many sessions at once, about 0.8 MiB each; past it COMPRESS is refused and the session goes on uncompressed (0: not offered)", EnvVars: env("COMPRESS_SESSIONS")},
			&cli.DurationFlag{Name: "pre-auth-timeout", Value: 30 * time.Second, Usage: "how long a client that has not logged in may be silent (at most go-imap's 30s)", EnvVars: env("PRE_AUTH_TIMEOUT")},
			&cli.IntFlag{Name: "max-conns", Value: daemon.DefaultMaxConns, Usage: "open connections in total (-1: no limit)", EnvVars: env("MAX_CONNS")},
			&cli.IntFlag{Name: "max-conns-per-ip", Value: daemon.DefaultMaxConnsPerIP, Usage: "open connections per client IP (-1: no limit)", EnvVars: env("MAX_CONNS_PER_IP")},
			&cli.BoolFlag{Name: "debug", Usage: "log debug lines", EnvVars: append(env("DEBUG"), "TWINMX_DEBUG")},
			&cli.BoolFlag{Name: "trace", Usage: "log raw IMAP traffic, passwords included (local debugging only)", EnvVars: env("TRACE")},
		),
		Action: run,
	}
}

func run(c *cli.Context) error {
	log := svc.Logger(c.Bool("debug") || c.Bool("trace"))
	if err := checkFlags(c); err != nil {
		return err
	}
	key, dbPub, err := svc.DBKeys(c)
	if err != nil {
		return err
	}
	cfg := daemon.Config{
		Listen: c.String("listen"), TLSListen: c.String("tls-listen"),
		DB: c.String("db"), DBKey: dbPub, Key: key, Metrics: c.String("metrics"),
		AllowPlaintext: c.Bool("allow-plaintext"), DBTimeout: c.Duration("db-timeout"),
		MaxAuthFailures: c.Int("max-auth-failures"), AuthFailWindow: c.Duration("auth-fail-window"), AuthFailDelay: c.Duration("auth-fail-delay"),
		MaxConns: c.Int("max-conns"), MaxConnsPerIP: c.Int("max-conns-per-ip"), PreAuthTimeout: c.Duration("pre-auth-timeout"),
		AppendMemory: c.Int64("append-memory"), AppendMemoryPerAccount: c.Int64("append-memory-per-account"), CacheBytes: cacheBytes(c.Int64("cache-mb")), BodyCacheBytes: c.Int64("body-cache-mb") << 20,
		CompressSessions: c.Int("compress-sessions"), LoginCacheTTL: c.Duration("login-cache"),
		Logger: log, Debug: c.Bool("trace"),
		Ready: func(_, _ net.Addr) { svc.Ready() },
	}
	// 0 on the command line means none and never, not "default" (as in
	// pop3d).
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = -1
	}
	if cfg.LoginCacheTTL == 0 {
		cfg.LoginCacheTTL = -1
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.TLS, err = tlsconf.FromFlags(ctx, log, c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed"), c.String("hostname")); err != nil {
		return err
	}
	return daemon.Run(ctx, cfg)
}

// cacheBytes is --cache-mb in bytes; 0 turns the cache off (daemon.Config
// reads 0 as the default). checkFlags has refused a negative mb and one
// whose bytes overflow.
func cacheBytes(mb int64) int64 {
	if mb == 0 {
		return -1
	}
	return mb << 20
}

// maxPreAuthTimeout is go-imap's own bound on a command's read before
// login (imapserver cmdReadTimeout); --pre-auth-timeout can only shorten
// it.
const maxPreAuthTimeout = 30 * time.Second

// maxCacheMB is the most MiB whose bytes fit in an int64, and
// maxBodyCacheMB the most the body cache's arena takes: mailcache indexes
// it with an int, so at most math.MaxInt32 bytes on every build.
const (
	maxCacheMB     = math.MaxInt64 >> 20
	maxBodyCacheMB = math.MaxInt32 >> 20
)

// checkFlags refuses values the daemon would silently replace or read
// otherwise than the help and docs/imapd.md say, naming the flag (as
// smtpd's checkFlags). daemon.Config reads a zero as "the default":
// --max-conns 0 ran with 1000 connections, --max-auth-failures 0 with 10,
// --db-timeout 0 and --auth-fail-window 0 with 30 s and 15 min,
// --append-memory 0 with 256 MiB, --append-memory-per-account 0 with
// 81 MiB and --pre-auth-timeout 0 with 30 s. A negative
// --auth-fail-window expired every failure at once, so the login-failure
// limit was off; a negative --db-timeout and --append-memory took the
// defaults, a negative --pre-auth-timeout or one over 30 s was go-imap's
// 30 s, and a negative --cache-mb, --body-cache-mb, --compress-sessions
// or --login-cache was "none". A --cache-mb or --body-cache-mb over
// 2^43 overflowed into bytes: negative (no cache) or 0 (the default).
func checkFlags(c *cli.Context) error {
	var errs []error
	for _, f := range []string{"db-timeout", "auth-fail-window"} {
		if d := c.Duration(f); d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: must be above 0", f, d))
		}
	}
	if d := c.Duration("pre-auth-timeout"); d <= 0 || d > maxPreAuthTimeout {
		errs = append(errs, fmt.Errorf("--pre-auth-timeout %v: must be above 0 and at most %v (go-imap's own bound)", d, maxPreAuthTimeout))
	}
	if d := c.Duration("login-cache"); d < 0 {
		errs = append(errs, fmt.Errorf("--login-cache %v: must not be negative (0: every login is checked)", d))
	}
	for _, f := range []string{"max-auth-failures", "max-conns", "max-conns-per-ip"} {
		if c.Int(f) == 0 {
			errs = append(errs, fmt.Errorf("--%s 0: must be above 0, or -1 for no limit", f))
		}
	}
	if n := c.Int64("append-memory"); n <= 0 {
		errs = append(errs, fmt.Errorf("--append-memory %d: must be above 0", n))
	}
	if c.Int64("append-memory-per-account") == 0 {
		errs = append(errs, errors.New("--append-memory-per-account 0: must be above 0, or -1 for no share"))
	}
	for _, mb := range []struct {
		flag string
		most int64
	}{{"cache-mb", maxCacheMB}, {"body-cache-mb", maxBodyCacheMB}} {
		if n := c.Int64(mb.flag); n < 0 || n > mb.most {
			errs = append(errs, fmt.Errorf("--%s %d: must be 0 (none) to %d", mb.flag, n, mb.most))
		}
	}
	if n := c.Int("compress-sessions"); n < 0 {
		errs = append(errs, fmt.Errorf("--compress-sessions %d: must not be negative (0: not offered)", n))
	}
	if err := tlsconf.CheckFlags(c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
