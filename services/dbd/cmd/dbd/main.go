// Command dbd is twinmx's database daemon: the only process with disk state
// (SPEC §4). See docs/architecture.md and docs/wire.md.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/dbd/internal/daemon"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "dbd",
		Usage: "twinmx database daemon",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "data folder", EnvVars: []string{"TWINMX_DBD_DATA"}, Required: true},
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT for the encrypted wire protocol", EnvVars: []string{"TWINMX_DBD_LISTEN"}, Required: true},
			&cli.StringFlag{Name: "key", Usage: "dbd's secret key file (made by dbctl keygen)", EnvVars: []string{"TWINMX_DBD_KEY"}, Required: true},
			&cli.StringSliceFlag{Name: "old-key", Usage: "an older secret key of dbd still accepted while clients move to --key's public key (repeatable; docs/roles.md §7)", EnvVars: []string{"TWINMX_DBD_OLD_KEY"}},
			&cli.StringFlag{Name: "clients", Usage: "clients file: one \"ROLE PATH-TO-PUBKEY [not-after=WHEN]\" a line (docs/roles.md §4)", EnvVars: []string{"TWINMX_DBD_CLIENTS"}, Required: true},
			&cli.StringFlag{Name: "metrics", Usage: "HOST:PORT for Prometheus /metrics (empty: off)", EnvVars: []string{"TWINMX_DBD_METRICS"}},
			&cli.IntFlag{Name: "cache", Value: 64, Usage: "Pebble's block cache in MiB; give it about 5 bytes a row (the bloom filters) plus room for index and data blocks (docs/dbd.md, Storage)", EnvVars: []string{"TWINMX_DBD_CACHE"}},
			&cli.IntFlag{Name: "row-cache", Value: 32, Usage: "MiB of mail rows kept for readers (pop3d, imapd): new mail from its delivery, older mail once read; -1: none (docs/dbd.md, Storage)", EnvVars: []string{"TWINMX_DBD_ROW_CACHE"}},
			&cli.IntFlag{Name: "memtable", Value: 4, Usage: "Pebble's memtable in MiB; 64 reads new mail faster and writes faster with --min-copies 1, but costs every lookup (strict mode slower); dbd may hold about twice this (docs/dbd.md, Storage)", EnvVars: []string{"TWINMX_DBD_MEMTABLE"}},
			&cli.StringFlag{Name: "site", Usage: "site name, at most 55 bytes; per-site counters count in a slot named after it and the store's incarnation (empty: from the key)", EnvVars: []string{"TWINMX_DBD_SITE"}},
			&cli.BoolFlag{Name: "debug", Usage: "log protocol detail", EnvVars: []string{"TWINMX_DEBUG"}},
		},
		Action: run,
	}
	if err := svc.Run(app, os.Args, svc.Unit{Writable: []string{"data"}, Reload: true}); err != nil {
		fmt.Fprintln(os.Stderr, "dbd:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	log := svc.Logger(c.Bool("debug"))
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return daemon.Run(ctx, daemon.Config{
		Data:        c.String("data"),
		Listen:      c.String("listen"),
		KeyPath:     c.String("key"),
		OldKeyPaths: c.StringSlice("old-key"),
		Clients:     c.String("clients"),
		Metrics:     c.String("metrics"),
		Site:        c.String("site"),
		CacheMiB:    c.Int("cache"),
		MemTableMiB: c.Int("memtable"),
		RowCacheMiB: c.Int("row-cache"),
		Logger:      log,
		Ready:       func(net.Addr) { svc.Ready() },
	})
}
