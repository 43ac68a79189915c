// Command backupd replicates twinmx's dbds into each other and marks mail
// stored on two sites as backed up (SPEC §6). See docs/backupd.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
	"github.com/urfave/cli/v2"
)

func main() {
	if err := svc.Run(newApp(), os.Args, svc.Unit{}); err != nil {
		fmt.Fprintln(os.Stderr, "backupd:", err)
		os.Exit(1)
	}
}

// newApp is backupd's command line: flags and the daemon's action.
func newApp() *cli.App {
	return &cli.App{
		Name:  "backupd",
		Usage: "replicate twinmx dbds into each other and mark what is on two sites",
		// A site value holds a comma (NAME=HOST:PORT,PUBFILE); several
		// sites in the environment variable are separated by spaces.
		SliceFlagSeparator: " ",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "site", Usage: "NAME=HOST:PORT,PUBFILE of one dbd (repeat; at least 2; space-separated in the variable)", EnvVars: []string{"TWINMX_BACKUPD_SITES"}, Required: true},
			&cli.StringFlag{Name: "key", Usage: "backupd's secret key file (role backupd at every dbd)", EnvVars: []string{"TWINMX_BACKUPD_KEY"}, Required: true},
			&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: []string{"TWINMX_BACKUPD_METRICS"}},
			&cli.BoolFlag{Name: "debug", Usage: "log protocol detail", EnvVars: []string{"TWINMX_DEBUG"}},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	log := svc.Logger(c.Bool("debug"))
	cfg, err := config(c)
	if err != nil {
		return err
	}
	cfg.Logger = log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r, err := replica.New(cfg, reg)
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
	svc.Ready()
	return r.Run(ctx)
}

// config reads --site and --key into a replica.Config, reporting every
// problem at once with the flag named. Empty --site values are skipped:
// TWINMX_BACKUPD_SITES is split at each space, so two spaces between
// sites, or one at the end, gave an empty value, which was refused as a
// malformed site (`site "": want NAME=HOST:PORT,PUBFILE`) although the
// sites were separated by spaces as docs/backupd.md says. An empty --key
// passed the required-flag check and failed as "open : no such file".
func config(c *cli.Context) (replica.Config, error) {
	var cfg replica.Config
	var errs []error
	for _, v := range c.StringSlice("site") {
		if strings.TrimSpace(v) == "" {
			continue
		}
		s, err := replica.ParseSite(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--site: %w", err))
			continue
		}
		cfg.Sites = append(cfg.Sites, s)
	}
	if len(cfg.Sites) < 2 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("--site: %d given, need at least 2", len(cfg.Sites)))
	}
	if path := c.String("key"); path == "" {
		errs = append(errs, errors.New("--key is required"))
	} else if kp, err := wire.LoadKeyPair(path); err != nil {
		errs = append(errs, fmt.Errorf("--key: %w", err))
	} else {
		cfg.Key = kp
	}
	return cfg, errors.Join(errs...)
}
