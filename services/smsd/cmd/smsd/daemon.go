package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/smsd/internal/claim"
	"github.com/twinmx/twinmx/services/smsd/internal/gateway"
	"github.com/twinmx/twinmx/services/smsd/internal/notify"
	"github.com/twinmx/twinmx/services/smsd/internal/relay"
)

func env(n string) []string { return []string{"TWINMX_SMSD_" + n} }

// dbFlags are --db, --db-pub and --key of every smsd command that talks
// to dbd.
func dbFlags() []cli.Flag {
	return svc.DBFlags("TWINMX_SMSD", "notify for the daemon, admin for the rule commands")
}

func daemonFlags() []cli.Flag {
	return append(dbFlags(),
		&cli.StringFlag{Name: "site", Usage: "A (claims and sends at once) or B (waits --peer-delay for A's claim)", EnvVars: env("SITE")},
		&cli.DurationFlag{Name: "peer-delay", Value: time.Minute, Usage: "site B: wait this long for site A's claim", EnvVars: env("PEER_DELAY")},
		&cli.DurationFlag{Name: "claim-timeout", Value: 5 * time.Minute, Usage: "take over a claim not refreshed for this long", EnvVars: env("CLAIM_TIMEOUT")},
		&cli.StringFlag{Name: "gateway-url", Usage: "HTTP SMS gateway URL (a template over .To, .Text, .Secret)", EnvVars: env("GATEWAY_URL")},
		&cli.StringFlag{Name: "gateway-method", Value: "POST", Usage: "HTTP method: GET (no body), POST, PUT or PATCH, in any case", EnvVars: env("GATEWAY_METHOD")},
		&cli.StringSliceFlag{Name: "gateway-header", Usage: "HTTP header \"Name: value\" (template; repeat)", EnvVars: env("GATEWAY_HEADER")},
		&cli.StringFlag{Name: "gateway-body", Usage: "HTTP body template (default " + gateway.DefaultBody + ")", EnvVars: env("GATEWAY_BODY")},
		&cli.StringFlag{Name: "gateway-cmd", Usage: "command per SMS, arguments split at spaces, each a template; the text comes on stdin", EnvVars: env("GATEWAY_CMD")},
		&cli.StringFlag{Name: "gateway-secret-file", Usage: "file holding the gateway credential ({{.Secret}})", EnvVars: env("GATEWAY_SECRET_FILE")},
		&cli.StringFlag{Name: "gateway-secret-env", Usage: "environment variable holding the gateway credential", EnvVars: env("GATEWAY_SECRET_ENV")},
		&cli.DurationFlag{Name: "gateway-timeout", Value: 10 * time.Second, Usage: "bound on one gateway call", EnvVars: env("GATEWAY_TIMEOUT")},
		&cli.IntFlag{Name: "rate-limit", Value: 20, Usage: "at most this many SMS per number per --rate-window (0: no limit)", EnvVars: env("RATE_LIMIT")},
		&cli.DurationFlag{Name: "rate-window", Value: time.Hour, Usage: "window of --rate-limit", EnvVars: env("RATE_WINDOW")},
		&cli.StringFlag{Name: "relay", Usage: "SMTP relay HOST:PORT for forward copies (empty: no forward copies)", EnvVars: env("RELAY")},
		&cli.StringFlag{Name: "relay-tls", Value: relay.TLSStartTLS, Usage: "none, starttls or tls", EnvVars: env("RELAY_TLS")},
		&cli.StringFlag{Name: "relay-user", Usage: "AUTH PLAIN user (empty: no AUTH)", EnvVars: env("RELAY_USER")},
		&cli.StringFlag{Name: "relay-password-file", Usage: "file holding the relay password", EnvVars: env("RELAY_PASSWORD_FILE")},
		&cli.StringFlag{Name: "relay-password-env", Usage: "environment variable holding the relay password", EnvVars: env("RELAY_PASSWORD_ENV")},
		&cli.StringFlag{Name: "forward-from", Usage: "envelope sender of forward copies (empty: <>)", EnvVars: env("FORWARD_FROM")},
		&cli.DurationFlag{Name: "retry-min", Value: 5 * time.Second, Usage: "first retry delay after a failed attempt (doubles)", EnvVars: env("RETRY_MIN")},
		&cli.DurationFlag{Name: "retry-max", Value: 5 * time.Minute, Usage: "longest retry delay (at most a third of --claim-timeout)", EnvVars: env("RETRY_MAX")},
		&cli.IntFlag{Name: "max-tries", Value: 10, Usage: "attempts before a notification is given up", EnvVars: env("MAX_TRIES")},
		&cli.IntFlag{Name: "backlog", Value: 5000, Usage: "newest receive rows looked at on start", EnvVars: env("BACKLOG")},
		&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: env("METRICS")},
		&cli.BoolFlag{Name: "debug", Usage: "debug logging", EnvVars: []string{"TWINMX_DEBUG"}},
	)
}

func dialDB(c *cli.Context, log *slog.Logger) (*client.Client, error) {
	addr, pub, key := c.String("db"), c.String("db-pub"), c.String("key")
	if addr == "" || pub == "" || key == "" {
		return nil, cli.Exit("smsd: --db, --db-pub and --key are required", 2)
	}
	return client.Open(addr, pub, key, log)
}

// secret reads a credential from a file or an environment variable.
func secret(c *cli.Context, fileFlag, envFlag string) (string, error) {
	if f := c.String(fileFlag); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read --%s: %w", fileFlag, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if n := c.String(envFlag); n != "" {
		v, ok := os.LookupEnv(n)
		if !ok {
			return "", fmt.Errorf("--%s: environment variable %s is not set", envFlag, n)
		}
		return v, nil
	}
	return "", nil
}

func gatewayFrom(c *cli.Context) (gateway.Gateway, error) {
	sec, err := secret(c, "gateway-secret-file", "gateway-secret-env")
	if err != nil {
		return nil, err
	}
	switch u, cmd := c.String("gateway-url"), c.String("gateway-cmd"); {
	case u != "" && cmd != "":
		return nil, cli.Exit("smsd: give --gateway-url or --gateway-cmd, not both", 2)
	case u != "":
		return gateway.NewHTTP(gateway.HTTPConfig{URL: u, Method: c.String("gateway-method"), Headers: c.StringSlice("gateway-header"),
			Body: c.String("gateway-body"), Secret: sec, Timeout: c.Duration("gateway-timeout")})
	case cmd != "":
		return gateway.NewCommand(gateway.CommandConfig{Argv: strings.Fields(cmd), Secret: sec, Timeout: c.Duration("gateway-timeout")})
	}
	return nil, nil
}

func relayFrom(c *cli.Context) (*relay.Relay, error) {
	if c.String("relay") == "" {
		return nil, nil
	}
	pw, err := secret(c, "relay-password-file", "relay-password-env")
	if err != nil {
		return nil, err
	}
	return relay.New(relay.Config{Addr: c.String("relay"), TLS: c.String("relay-tls"), User: c.String("relay-user"),
		Password: pw, From: c.String("forward-from")})
}

// checkDaemonFlags refuses negative values, which the daemon took as
// they came or silently replaced: a negative --claim-timeout had the
// other site take over every claim at once and a negative --peer-delay
// had site B claim at once, so both sites sent; a negative --retry-min
// retried a failing gateway at once until --max-tries gave the number up
// within a second; a negative --gateway-timeout failed every call; a
// negative --rate-limit ran without a limit.
func checkDaemonFlags(c *cli.Context) error {
	var errs []string
	for _, f := range []string{"peer-delay", "claim-timeout", "gateway-timeout", "rate-window", "retry-min", "retry-max"} {
		if d := c.Duration(f); d < 0 {
			errs = append(errs, fmt.Sprintf("--%s %v: must not be negative (0: the default)", f, d))
		}
	}
	for _, f := range []string{"rate-limit", "max-tries", "backlog"} {
		if n := c.Int(f); n < 0 {
			errs = append(errs, fmt.Sprintf("--%s %d: must not be negative", f, n))
		}
	}
	// A retrying owner waits up to max(--retry-max, --retry-min) between
	// looks and refreshes its claim at a look; notify cuts --retry-max to
	// a third of --claim-timeout but never below --retry-min, so a larger
	// --retry-min let the claim expire while its owner waited: the other
	// site took it over and both sent.
	if rmin, ct := c.Duration("retry-min"), c.Duration("claim-timeout"); rmin > 0 && ct > 0 && rmin > ct/3 {
		errs = append(errs, fmt.Sprintf("--retry-min %v: must be at most a third of --claim-timeout %v, or an owner retrying a failing gateway lets its claim expire and the other site sends too", rmin, ct))
	}
	if len(errs) > 0 {
		return cli.Exit("smsd: "+strings.Join(errs, "; "), 2)
	}
	return nil
}

// runDaemon serves until SIGINT or SIGTERM.
func runDaemon(c *cli.Context) error {
	if err := checkDaemonFlags(c); err != nil {
		return err
	}
	log := svc.Logger(c.Bool("debug"))
	var site claim.Site
	switch strings.ToUpper(c.String("site")) {
	case "A":
		site = claim.SiteA
	case "B":
		site = claim.SiteB
	default:
		return cli.Exit("smsd: --site must be A or B", 2)
	}
	gw, err := gatewayFrom(c)
	if err != nil {
		return err
	}
	rl, err := relayFrom(c)
	if err != nil {
		return err
	}
	db, err := dialDB(c, log)
	if err != nil {
		return err
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := notify.Config{DB: db, Site: site, PeerDelay: c.Duration("peer-delay"), ClaimTimeout: c.Duration("claim-timeout"),
		RetryMin: c.Duration("retry-min"), RetryMax: c.Duration("retry-max"), MaxTries: c.Int("max-tries"),
		Limit: &gateway.Limiter{N: c.Int("rate-limit"), Window: c.Duration("rate-window")}, Backlog: c.Int("backlog"),
		Logger: log, Metrics: notify.NewMetrics(reg)}
	if gw != nil {
		cfg.SMS = gw
	}
	if rl != nil {
		cfg.Relay = rl
	}
	eng, err := notify.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := c.String("metrics"); addr != "" {
		stopMetrics, err := svc.ServeMetrics(addr, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	log.Info("smsd started", "db", c.String("db"), "site", site, "peer-delay", cfg.PeerDelay, "claim-timeout", cfg.ClaimTimeout,
		"sms", gw != nil, "relay", c.String("relay"))
	svc.Ready()
	return eng.Run(ctx)
}
