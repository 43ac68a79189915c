// Command backupd replicates twinmx's dbds into each other and marks mail
// stored on two sites as backed up (SPEC §6). See docs/backupd.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/backupd/internal/replica"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
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
	if err := svc.Run(app, os.Args, svc.Unit{}); err != nil {
		fmt.Fprintln(os.Stderr, "backupd:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	log := svc.Logger(c.Bool("debug"))
	cfg := replica.Config{Logger: log}
	var errs []error
	for _, v := range c.StringSlice("site") {
		s, err := replica.ParseSite(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfg.Sites = append(cfg.Sites, s)
	}
	kp, err := wire.LoadKeyPair(c.String("key"))
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Key = kp
	if err := errors.Join(errs...); err != nil {
		return err
	}
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
