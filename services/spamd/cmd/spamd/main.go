// Command spamd decides every receive row (SPEC §7): the daemon (default
// action, daemon.go) and the offline tools `eval` and `train`.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/svc"
)

func main() {
	app := &cli.App{
		Name:     "spamd",
		Usage:    "spam decisions for twinmx",
		Flags:    daemonFlags(),
		Action:   runDaemon,
		Commands: []*cli.Command{evalCommand(), trainCommand(), pushCommand(), listCommand()},
	}
	if err := svc.Run(app, os.Args, svc.Unit{}); err != nil {
		fmt.Fprintln(os.Stderr, "spamd:", err)
		os.Exit(1)
	}
}
