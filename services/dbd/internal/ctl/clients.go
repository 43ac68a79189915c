package ctl

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/urfave/cli/v2"
)

// clientsCmd checks a clients file offline, with dbd's own parser, so an
// operator can test an edit before dbd reloads it (dbd keeps the old list
// when the new one is bad, which is easy to miss in its log).
func clientsCmd() *cli.Command {
	return &cli.Command{
		Name:  "clients",
		Usage: "the clients file of dbd (docs/roles.md §4)",
		Subcommands: []*cli.Command{{
			Name: "check",
			Usage: "read FILE as dbd does and list its keys with their roles and not-after; " +
				"exit status 1 and every problem if dbd would refuse it",
			ArgsUsage: "FILE",
			Flags: []cli.Flag{&cli.DurationFlag{Name: "warn", Value: 14 * 24 * time.Hour,
				Usage: "mark keys that expire within this time"}},
			Action: checkClients,
		}},
	}
}

func checkClients(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("clients check: want one FILE")
	}
	cl, err := auth.LoadClients(c.Args().First())
	if err != nil {
		return cli.Exit(fmt.Sprintf("dbctl: dbd would refuse this file:\n%v", err), 1)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tROLE\tKEY FILE\tPUBLIC KEY\tNOT AFTER\tSTATE")
	for _, l := range cl.All() {
		notAfter, state := "-", "ok"
		if !l.NotAfter.IsZero() {
			notAfter = l.NotAfter.UTC().Format(time.RFC3339)
			left := l.NotAfter.Sub(now)
			switch {
			case l.Expired(now):
				state = "EXPIRED: refused"
			case left < c.Duration("warn"):
				state = "expires in " + roundLeft(left)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", l.Line, l.Role, l.Name, l.Key, notAfter, state)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write the list: %w", err)
	}
	return nil
}

// roundLeft writes a time left in days and hours, or minutes below an hour.
func roundLeft(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Minute).String()
	}
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if days == 0 {
		return fmt.Sprintf("%dh", hours)
	}
	return fmt.Sprintf("%dd %dh", days, hours)
}
