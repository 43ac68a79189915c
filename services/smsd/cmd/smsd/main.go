// Command smsd sends SMS notifications and forward copies of accepted mail
// (SPEC §9), once for two sites: the daemon (default action, daemon.go)
// and the commands that write a mailbox's rules into dbd (rules.go).
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire/svc"
)

func main() {
	app := &cli.App{
		Name:     "smsd",
		Usage:    "SMS notifications and forward copies for twinmx",
		Flags:    daemonFlags(),
		Action:   runDaemon,
		Commands: ruleCommands(),
	}
	if err := svc.Run(app, os.Args, svc.Unit{}); err != nil {
		fmt.Fprintln(os.Stderr, "smsd:", err)
		os.Exit(1)
	}
}
