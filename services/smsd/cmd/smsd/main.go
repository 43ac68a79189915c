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
	if err := svc.Run(newApp(), os.Args, svc.Unit{}); err != nil {
		fmt.Fprintln(os.Stderr, "smsd:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "smsd",
		Usage: "SMS notifications and forward copies for twinmx",
		// Values of repeatable flags hold commas: a window's day list
		// ("mon,wed 08:00-18:00", as rule show prints it) and HTTP
		// headers ("Accept: text/plain, application/json"). Repeat the
		// flag for several values.
		DisableSliceFlagSeparator: true,
		Flags:                     daemonFlags(),
		Action:                    runDaemon,
		Commands:                  ruleCommands(),
	}
}
