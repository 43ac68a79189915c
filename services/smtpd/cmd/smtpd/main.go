// Command smtpd is twinmx's inbound SMTP server: it answers 250 only for a
// mail that is spam-checked and stored on both sites (SPEC §1, §5). See
// docs/smtpd.md.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/smtpd/internal/daemon"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/session"
)

func env(name string) []string { return []string{"TWINMX_SMTPD_" + name} }

func main() {
	if err := svc.Run(newApp(), os.Args, svc.Unit{LowPorts: true}); err != nil {
		fmt.Fprintln(os.Stderr, "smtpd:", err)
		os.Exit(1)
	}
}

// newApp is smtpd's command line: flags, the daemon's action, replay.
func newApp() *cli.App {
	return &cli.App{
		Name:  "smtpd",
		Usage: "twinmx inbound SMTP server (deferred acceptance)",
		Flags: append(svc.DBFlags("TWINMX_SMTPD", "smtpd"),
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT to accept SMTP on", EnvVars: env("LISTEN")},
			&cli.StringFlag{Name: "hostname", Usage: "our name in the greeting and Received fields", EnvVars: env("HOSTNAME")},
			&cli.DurationFlag{Name: "decision-window", Value: 20 * time.Second, Usage: "how long a sender waits after DATA for verdict and backup before 451", EnvVars: env("DECISION_WINDOW")},
			&cli.IntFlag{Name: "min-copies", Value: 2, Usage: "sites that must hold a mail before 250: 2 (strict) or 1 (degraded)", EnvVars: env("MIN_COPIES")},
			&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: env("METRICS")},
			&cli.Int64Flag{Name: "max-size", Value: 64 << 20, Usage: "message size limit in bytes (SIZE)", EnvVars: env("MAX_SIZE")},
			&cli.Int64Flag{Name: "data-memory", Usage: "bytes of message data all sessions may hold at once (default max(144 MiB, 2×max-size+16 MiB))", EnvVars: env("DATA_MEMORY")},
			&cli.IntFlag{Name: "max-recipients", Value: 100, Usage: "recipients per transaction", EnvVars: env("MAX_RECIPIENTS")},
			&cli.IntFlag{Name: "max-header-size", Value: session.DefaultMaxHeaderSize, Usage: "header section limit in bytes (552 5.3.4 above it; -1: none)", EnvVars: env("MAX_HEADER_SIZE")},
			&cli.IntFlag{Name: "max-hops", Value: session.DefaultMaxHops, Usage: "Received fields a mail may arrive with (554 5.4.6 above it: a loop; -1: no limit)", EnvVars: env("MAX_HOPS")},
			&cli.BoolFlag{Name: "return-path", Value: true, Usage: "add Return-Path (the envelope sender) above our Received field, as final delivery does (RFC 5321 §4.4); false only while the other site runs pop3d/imapd older than 2026-12-03", EnvVars: env("RETURN_PATH")},
			&cli.StringFlag{Name: "postmaster", Usage: "mailbox that RCPT TO:<Postmaster> without a domain reaches (RFC 5321 §4.5.1 requires it; default postmaster@HOSTNAME; also create postmaster@DOMAIN for each domain)", EnvVars: env("POSTMASTER")},
			&cli.DurationFlag{Name: "db-timeout", Value: 10 * time.Second, Usage: "bound on one dbd request (retries included) before 451 4.3.0", EnvVars: env("DB_TIMEOUT")},
			&cli.IntFlag{Name: "max-conns", Value: guard.DefaultMaxConns, Usage: "concurrent connections in total (-1: no limit)", EnvVars: env("MAX_CONNS")},
			&cli.IntFlag{Name: "max-conns-per-ip", Value: guard.DefaultMaxConnsPerIP, Usage: "concurrent connections per client IP (-1: no limit)", EnvVars: env("MAX_CONNS_PER_IP")},
			&cli.IntFlag{Name: "max-conn-rate", Value: guard.DefaultMaxConnRate, Usage: "connections a minute from one client IP (IPv6: one /64; -1: no limit)", EnvVars: env("MAX_CONN_RATE")},
			&cli.StringSliceFlag{Name: "conn-rate-exempt", Value: cli.NewStringSlice("127.0.0.0/8", "::1/128"), Usage: "client prefixes without a connection rate limit (\"\": none)", EnvVars: env("CONN_RATE_EXEMPT")},
			&cli.DurationFlag{Name: "greet-pause", Value: guard.DefaultGreetPause, Usage: "wait this long before the greeting to catch early talkers (new client IPs only; negative: off)", EnvVars: env("GREET_PAUSE")},
			&cli.DurationFlag{Name: "idle-timeout", Value: guard.DefaultIdleTimeout, Usage: "per command line, from when smtpd is ready for it to its line end", EnvVars: env("IDLE_TIMEOUT")},
			&cli.DurationFlag{Name: "data-timeout", Value: guard.DefaultDataTimeout, Usage: "per read during DATA", EnvVars: env("DATA_TIMEOUT")},
			&cli.DurationFlag{Name: "session-timeout", Value: guard.DefaultSessionTimeout, Usage: "whole connection", EnvVars: env("SESSION_TIMEOUT")},
			&cli.DurationFlag{Name: "mailbox-cache", Value: 5 * time.Second, Usage: "how long a mailbox lookup is remembered (a new mailbox is seen within a fifth of it; 0: off)", EnvVars: env("MAILBOX_CACHE")},
			&cli.IntFlag{Name: "capture-max", Value: guard.DefaultCaptureMax, Usage: "transcript bytes kept per connection for replay (-1: no captures)", EnvVars: env("CAPTURE_MAX")},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate chain for STARTTLS", EnvVars: env("TLS_CERT")},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key for STARTTLS", EnvVars: env("TLS_KEY")},
			&cli.BoolFlag{Name: "tls-self-signed", Usage: "offer STARTTLS with a fresh self-signed certificate (local runs)", EnvVars: env("TLS_SELF_SIGNED")},
			&cli.BoolFlag{Name: "debug", Usage: "log every session step", EnvVars: []string{"TWINMX_DEBUG"}},
		),
		Action:   run,
		Commands: []*cli.Command{replayCmd()},
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
	cfg := daemon.Config{
		Listen: c.String("listen"), Hostname: c.String("hostname"),
		DB: c.String("db"), DBKey: dbPub, Key: key, Metrics: c.String("metrics"),
		DecisionWindow: c.Duration("decision-window"), MinCopies: c.Int("min-copies"),
		MaxSize: c.Int64("max-size"), DataMemory: c.Int64("data-memory"), MaxRecipients: c.Int("max-recipients"),
		MaxHeaderSize: c.Int("max-header-size"), MaxHops: c.Int("max-hops"),
		NoReturnPath: !c.Bool("return-path"),
		DBTimeout:    c.Duration("db-timeout"), MailboxTTL: c.Duration("mailbox-cache"),
		Guard: guard.Config{
			Postmaster: c.String("postmaster"),
			MaxConns:   c.Int("max-conns"), MaxConnsPerIP: c.Int("max-conns-per-ip"), MaxConnRate: c.Int("max-conn-rate"),
			GreetPause: c.Duration("greet-pause"), IdleTimeout: c.Duration("idle-timeout"),
			DataTimeout: c.Duration("data-timeout"), SessionTimeout: c.Duration("session-timeout"),
			CaptureMax: c.Int("capture-max"),
		},
		Logger: log,
		Ready:  func(net.Addr) { svc.Ready() },
	}
	if cfg.MailboxTTL == 0 {
		cfg.MailboxTTL = -1 // 0 on the command line means off
	}
	if cfg.Guard.ConnRateExempt, err = prefixes(c.StringSlice("conn-rate-exempt")); err != nil {
		return err
	}
	if cfg.Guard.MaxConnRate == 0 {
		cfg.Guard.MaxConnRate = -1 // 0 on the command line means off
	}
	if cfg.Guard.GreetPause == 0 {
		cfg.Guard.GreetPause = -1 // 0 on the command line means off, not "default"
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.TLS, err = tlsconf.FromFlags(ctx, log, c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed"), cfg.Hostname); err != nil {
		return err
	}
	return daemon.Run(ctx, cfg)
}

// maxDecisionWindow bounds --decision-window below the 10 minutes a
// sender waits for the reply to its final dot (RFC 5321 §4.5.3.2.6;
// SPEC §1: the window lies far inside it). With a window that long the
// sender gives up first: it never sees a 250 or 550 and retries a mail
// that may be in the mailbox already. dbd also ends an arm at 10 minutes.
const maxDecisionWindow = 10 * time.Minute

// checkFlags refuses values the daemon would silently replace or that
// cannot work, naming the flag. The daemon's Config reads a zero as "the
// default": --min-copies 0 would run strict and --decision-window 0 wait
// 20 s, and an operator who wrote them meant something else. A negative
// --db-timeout would make every dbd request fail at once, so every mail
// would get 451. A negative --max-size or --max-recipients was refused
// later by the daemon without naming the flag.
func checkFlags(c *cli.Context) error {
	var errs []error
	for _, f := range []string{"listen", "hostname"} {
		if c.String(f) == "" {
			errs = append(errs, fmt.Errorf("--%s is required", f))
		}
	}
	if n := c.Int("min-copies"); n != 1 && n != 2 {
		errs = append(errs, fmt.Errorf("--min-copies %d: must be 1 (degraded) or 2 (strict)", n))
	}
	if d := c.Duration("decision-window"); d <= 0 || d >= maxDecisionWindow {
		errs = append(errs, fmt.Errorf("--decision-window %v: must be above 0 and below %v (RFC 5321 §4.5.3.2.6: senders wait 10 minutes for the reply)", d, maxDecisionWindow))
	}
	for _, f := range []string{"db-timeout", "idle-timeout", "data-timeout", "session-timeout"} {
		if d := c.Duration(f); d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: must be above 0", f, d))
		}
	}
	// The daemon and the guard read a zero limit as "the default" too:
	// --max-conns 0 or --capture-max 0 ran with 1000 connections and
	// 256 KiB captures. Where a limit can be lifted, -1 does it.
	for _, f := range []string{"max-header-size", "max-hops", "max-conns", "max-conns-per-ip", "capture-max"} {
		if c.Int(f) == 0 {
			errs = append(errs, fmt.Errorf("--%s 0: must be above 0, or -1 for no limit", f))
		}
	}
	if n := c.Int("max-recipients"); n <= 0 {
		errs = append(errs, fmt.Errorf("--max-recipients %d: must be above 0", n))
	}
	if n := c.Int64("max-size"); n <= 0 {
		errs = append(errs, fmt.Errorf("--max-size %d: must be above 0", n))
	}
	if n := c.Int64("data-memory"); n < 0 {
		errs = append(errs, fmt.Errorf("--data-memory %d: must not be negative (0: the default)", n))
	}
	if err := tlsconf.CheckFlags(c.String("tls-cert"), c.String("tls-key"), c.Bool("tls-self-signed")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// prefixes parses --conn-rate-exempt: CIDR prefixes or single addresses.
// An empty list (the flag given as "") is a non-nil empty slice, which
// exempts nobody.
func prefixes(list []string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--conn-rate-exempt %q: not a prefix or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
