package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/twinmx/twinmx/services/smtpd/internal/replay"
)

func replayCmd() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "play captured sessions against an smtpd and compare its reply codes with the recorded ones",
		Description: "Captures come from dbd (the newest --last N capture rows; needs an admin key) or from files\n" +
			"(the raw content of a capture row, e.g. `dbctl find capture --by-key KEY --raw > F`).\n" +
			"A capture keeps a stored message as a reference; with --db its DATA is rebuilt from dbd.\n" +
			"Exit status 1 if any session's replies differ.",
		ArgsUsage: "[FILE...]",
		Flags: append(svc.DBFlags(svc.AdminEnv, "admin"),
			&cli.StringFlag{Name: "to", Usage: "HOST:PORT of the smtpd to play against", Required: true},
			&cli.IntFlag{Name: "last", Value: 10, Usage: "how many of the newest captures to play (with --db)"},
			&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for each reply"},
			&cli.BoolFlag{Name: "recorded-server", Usage: "play even against a server that greets with the recorded server's name (most likely the MX the sessions were recorded at: a replay there is real mail)"},
		),
		Action: runReplay,
	}
}

// checkReplayFlags refuses values that cannot give a meaningful replay:
// --wait 0 or below set every read's deadline in the past, so each session
// "failed" with an i/o timeout that said nothing about the target; --last 0
// played nothing and exited 0, as if every session had matched.
func checkReplayFlags(c *cli.Context) error {
	if _, _, err := net.SplitHostPort(c.String("to")); err != nil {
		return fmt.Errorf("--to %q: want HOST:PORT: %w", c.String("to"), err)
	}
	if w := c.Duration("wait"); w <= 0 {
		return fmt.Errorf("--wait %v: must be above 0", w)
	}
	if n := c.Int("last"); n < 1 {
		return fmt.Errorf("--last %d: must be at least 1", n)
	}
	return nil
}

func runReplay(c *cli.Context) error {
	if err := checkReplayFlags(c); err != nil {
		return err
	}
	var captures [][]byte
	var data func([]byte) ([]byte, error)
	if c.String("db") != "" {
		cl, err := adminClient(c)
		if err != nil {
			return err
		}
		defer cl.Close()
		data = replay.FromDB(c.Context, cl)
		if c.NArg() == 0 {
			if captures, err = fetchCaptures(c, cl); err != nil {
				return err
			}
		}
	} else if c.NArg() == 0 {
		return errors.New("give capture FILEs or --db, --db-pub and --key")
	}
	for _, f := range c.Args().Slice() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		captures = append(captures, b)
	}
	differ := 0
	for i, b := range captures {
		meta, recs, err := replay.Split(b)
		if err != nil {
			fmt.Fprintf(c.App.Writer, "capture %d: %v\n", i+1, err)
			differ++
			continue
		}
		d := net.Dialer{Timeout: min(c.Duration("wait"), 10*time.Second)}
		conn, err := d.DialContext(c.Context, "tcp", c.String("to"))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", c.String("to"), err)
		}
		res, err := replay.Play(c.Context, conn, recs, replay.Options{Wait: c.Duration("wait"), Data: data, RecordedServer: c.Bool("recorded-server")})
		conn.Close()
		if errors.Is(err, replay.ErrRecordedServer) {
			return cli.Exit(fmt.Sprintf("smtpd replay: %s: %v; a replay there is real mail (use a test smtpd with a name of its own, or --recorded-server)", c.String("to"), err), 1)
		}
		verdict := "same"
		switch {
		case res.Incomplete:
			verdict = "skipped (capture was full and bytes were elided, or it references stored mail and no --db was given)"
		case err != nil:
			verdict, differ = "failed: "+err.Error(), differ+1
		case !res.Match():
			verdict, differ = "DIFFERENT", differ+1
		}
		fmt.Fprintf(c.App.Writer, "%s: recorded %v, now %v: %s\n", meta, res.Want, res.Got, verdict)
	}
	if differ > 0 {
		return cli.Exit(fmt.Sprintf("smtpd replay: %d of %d sessions differ", differ, len(captures)), 1)
	}
	return nil
}

// adminClient connects to dbd with the admin key given by the flags.
func adminClient(c *cli.Context) (*client.Client, error) {
	if c.String("db-pub") == "" || c.String("key") == "" {
		return nil, errors.New("--db needs --db-pub and --key (an admin key)")
	}
	return client.Open(c.String("db"), c.String("db-pub"), c.String("key"), nil)
}

func fetchCaptures(c *cli.Context, cl *client.Client) ([][]byte, error) {
	keys, err := cl.ScanKeys(c.Context, model.Capture, c.Int("last"))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	// Oldest first, as they happened.
	for i := len(keys) - 1; i >= 0; i-- {
		row, err := cl.FindKey(c.Context, model.Capture, keys[i])
		if err != nil {
			return nil, fmt.Errorf("read capture %s: %w", keys[i], err)
		}
		out = append(out, row.Content)
	}
	return out, nil
}
