package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/confmail"
	"github.com/twinmx/twinmx/services/spamd/internal/digest"
	"github.com/twinmx/twinmx/services/spamd/internal/external"
	"github.com/twinmx/twinmx/services/spamd/internal/feedback"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
	"github.com/twinmx/twinmx/services/spamd/internal/modelstore"
	"github.com/twinmx/twinmx/services/spamd/internal/msgauth"
)

// dbFlags are --db, --db-pub and --key of every spamd command that talks
// to dbd.
func dbFlags() []cli.Flag { return svc.DBFlags("TWINMX_SPAMD", "spamd") }

// daemonFlags are the flags of the spamd daemon (the app's default action)
// and of the commands that talk to dbd.
func daemonFlags() []cli.Flag {
	return append(dbFlags(),
		&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: []string{"TWINMX_SPAMD_METRICS"}},
		&cli.StringFlag{Name: "model", Usage: "folder with a model.bin to judge with until dbd holds a pushed model (see spamd push)", EnvVars: []string{"TWINMX_SPAMD_MODEL"}},
		&cli.DurationFlag{Name: "grey-delay", Value: time.Minute, Usage: "greylisting: a first contact's retry passes after this long (0: greylisting off)", EnvVars: []string{"TWINMX_SPAMD_GREY_DELAY"}},
		&cli.StringFlag{Name: "dns", Usage: "DNS server HOST[:PORT] for SPF, DKIM and DMARC (empty: the servers of /etc/resolv.conf)", EnvVars: []string{"TWINMX_SPAMD_DNS"}},
		&cli.BoolFlag{Name: "no-auth", Usage: "skip SPF, DKIM and DMARC (no DNS)", EnvVars: []string{"TWINMX_SPAMD_NO_AUTH"}},
		&cli.StringFlag{Name: "spamassassin", Usage: "SpamAssassin spamd HOST:PORT to ask as one more signal (empty: none)", EnvVars: []string{"TWINMX_SPAMD_SPAMASSASSIN"}},
		&cli.StringFlag{Name: "rspamd", Usage: "rspamd normal worker URL (http://HOST:11333) to ask as one more signal (empty: none)", EnvVars: []string{"TWINMX_SPAMD_RSPAMD"}},
		&cli.IntFlag{Name: "backlog", Value: 2000, Usage: "newest delivery attempts judged at start", EnvVars: []string{"TWINMX_SPAMD_BACKLOG"}},
		&cli.BoolFlag{Name: "debug", Usage: "log every decision detail", EnvVars: []string{"TWINMX_DEBUG"}},
		&cli.DurationFlag{Name: "digest-every", Value: time.Hour, Usage: "send each mailbox a digest of its refused mail this often (0: off; replies to earlier digests still work)", EnvVars: []string{"TWINMX_SPAMD_DIGEST_EVERY"}},
		&cli.StringFlag{Name: "digest-smtp", Value: "127.0.0.1:25", Usage: "HOST:PORT of the local smtpd that digests are handed to (plain SMTP: use loopback)", EnvVars: []string{"TWINMX_SPAMD_DIGEST_SMTP"}},
		&cli.StringFlag{Name: "digest-address", Usage: "allow address named in every digest's Reply-To (empty: " + digest.DefaultLocalPart + "@ the mailbox's domain)", EnvVars: []string{"TWINMX_SPAMD_DIGEST_ADDRESS"}},
		&cli.IntFlag{Name: "digest-scan", Value: 20000, Usage: "newest receive rows and throw-ins a digest pass reads", EnvVars: []string{"TWINMX_SPAMD_DIGEST_SCAN"}},
		&cli.StringFlag{Name: "config-key", Usage: "a second secret key file, role admin, used only to apply configuration mails (empty: configuration by e-mail is off; see docs/roles.md)", EnvVars: []string{"TWINMX_SPAMD_CONFIG_KEY"}},
		&cli.StringFlag{Name: "config-address", Usage: "the address configuration mails go to (empty: " + confmail.DefaultLocalPart + "@ each local domain)", EnvVars: []string{"TWINMX_SPAMD_CONFIG_ADDRESS"}},
		&cli.DurationFlag{Name: "digest-claim-wait", Value: 30 * time.Second, Usage: "wait between claiming a digest and sending it (longer than the replication lag between sites; 0: none)", EnvVars: []string{"TWINMX_SPAMD_DIGEST_CLAIM_WAIT"}},
	)
}

func dialDB(c *cli.Context, log *slog.Logger) (*client.Client, error) {
	return dialKey(c, c.String("key"), log)
}

// dialKey connects to dbd with the secret key file key.
func dialKey(c *cli.Context, key string, log *slog.Logger) (*client.Client, error) {
	addr, pub := c.String("db"), c.String("db-pub")
	if addr == "" || pub == "" || key == "" {
		return nil, cli.Exit("spamd: --db, --db-pub and --key are required", 2)
	}
	return client.Open(addr, pub, key, log)
}

// checkDaemonFlags refuses negative values where the daemon would
// silently take them for "off" or "none" (--grey-delay, --digest-claim-wait)
// or judge no backlog (--backlog): an operator who wrote one meant
// something else.
func checkDaemonFlags(c *cli.Context) error {
	var errs []string
	for _, f := range []string{"grey-delay", "digest-every", "digest-claim-wait"} {
		if d := c.Duration(f); d < 0 {
			errs = append(errs, fmt.Sprintf("--%s %v: must not be negative (0: off)", f, d))
		}
	}
	for _, f := range []string{"backlog", "digest-scan"} {
		if n := c.Int(f); n < 0 {
			errs = append(errs, fmt.Sprintf("--%s %d: must not be negative", f, n))
		}
	}
	if len(errs) > 0 {
		return cli.Exit("spamd: "+strings.Join(errs, "; "), 2)
	}
	return nil
}

// runDaemon judges every delivery attempt until SIGINT or SIGTERM.
func runDaemon(c *cli.Context) error {
	if err := checkDaemonFlags(c); err != nil {
		return err
	}
	log := svc.Logger(c.Bool("debug"))
	db, err := dialDB(c, log)
	if err != nil {
		return err
	}
	defer db.Close()
	var fallback *classify.Model
	if dir := c.String("model"); dir != "" {
		if fallback, err = loadModel(dir); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := judge.Config{DB: db, Backlog: c.Int("backlog"), Logger: log, Metrics: judge.NewMetrics(reg)}
	if cfg.GreyDelay = c.Duration("grey-delay"); cfg.GreyDelay == 0 {
		cfg.GreyDelay = -1
	}
	if !c.Bool("no-auth") {
		rc := msgauth.ResolverConfig{Server: c.String("dns")}
		if err := rc.Validate(); err != nil {
			return err
		}
		cfg.Auth = msgauth.New(msgauth.NewNetResolver(rc), msgauth.Config{Logger: log})
	}
	switch sa, rs := c.String("spamassassin"), c.String("rspamd"); {
	case sa != "" && rs != "":
		return cli.Exit("spamd: give --spamassassin or --rspamd, not both", 2)
	case sa != "":
		ec := external.SpamAssassinConfig{Addr: sa}
		if err := ec.Validate(); err != nil {
			return err
		}
		cfg.Engine = external.NewSpamAssassin(ec)
	case rs != "":
		ec := external.RspamdConfig{URL: rs}
		if err := ec.Validate(); err != nil {
			return err
		}
		cfg.Engine = external.NewRspamd(ec)
	}
	dcfg := digest.Config{DB: db, Every: c.Duration("digest-every"), SMTP: c.String("digest-smtp"), Address: c.String("digest-address"),
		Scan: c.Int("digest-scan"), ClaimWait: c.Duration("digest-claim-wait"), Logger: log, Metrics: digest.NewMetrics(reg)}
	if err := dcfg.Validate(); err != nil {
		return err
	}
	if dcfg.ClaimWait == 0 {
		dcfg.ClaimWait = -1
	}
	digests := digest.New(dcfg)
	cfg.Digests = digests
	ccfg := confmail.Config{DB: db, Auth: cfg.Auth, Address: c.String("config-address"), SMTP: c.String("digest-smtp"), Logger: log}
	if k := c.String("config-key"); k != "" {
		adm, err := dialKey(c, k, log)
		if err != nil {
			return fmt.Errorf("--config-key: %w", err)
		}
		defer adm.Close()
		ccfg.Apply = adm
	}
	confMails := confmail.New(ccfg)
	cfg.ConfigMails = confMails
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	live := modelstore.NewLive(fallback)
	cfg.Models = live
	initCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = live.Init(initCtx, db)
	cancel()
	if errors.Is(err, classify.ErrBadModel) {
		// A model of an older format (after an upgrade): judging goes on
		// with every other signal, and without the content classifier
		// nothing is rejected for its content, until a model is pushed.
		log.Error("the model in dbd cannot be read (retrain and push it: spamd train, spamd push); judging without it", "err", err,
			"fallback-model", fallback != nil)
	} else if err != nil {
		return fmt.Errorf("load the model from dbd: %w", err)
	}
	go live.Follow(ctx, db, log)
	if addr := c.String("metrics"); addr != "" {
		stopMetrics, err := svc.ServeMetrics(addr, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	log.Info("spamd started", "db", c.String("db"), "grey-delay", cfg.GreyDelay, "auth", cfg.Auth != nil, "fallback-model", fallback != nil,
		"digest-every", dcfg.Every, "config-by-mail", ccfg.Apply != nil)
	svc.Ready()
	var wg sync.WaitGroup
	wg.Go(func() { confMails.Run(ctx) })
	// Users' Junk moves (imapd's feedback rows) teach the live model.
	wg.Go(func() { feedback.New(feedback.Config{DB: db, Models: live, Logger: log}).Run(ctx) })
	if dcfg.Every > 0 {
		wg.Go(func() { digests.Run(ctx) })
	}
	err = judge.New(cfg).Run(ctx)
	stop() // the digest and config loops end with the judge
	wg.Wait()
	return err
}

// pushCommand stores a trained model in dbd for every spamd instance.
func pushCommand() *cli.Command {
	return &cli.Command{
		Name:  "push",
		Usage: "store the model of --model DIR in dbd; every running spamd switches to it",
		Flags: append(dbFlags(), modelDirFlag()),
		Action: func(c *cli.Context) error {
			m, err := loadModel(c.String("model"))
			if err != nil {
				return err
			}
			db, err := dialDB(c, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			k, err := modelstore.Push(ctx, db, m, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "model %s pushed\n", k)
			return nil
		},
	}
}
