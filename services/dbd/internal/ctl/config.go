package ctl

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/config"
)

// configCmd is `dbctl config show|history|apply FILE|hash`: the
// configuration language of pkg/wire/config without mail, as the
// operator (who = "dbctl").
func configCmd() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "the configuration as a command file: show, history, apply FILE (docs/spamd.md, Configuration by e-mail)",
		Subcommands: []*cli.Command{
			{Name: "show", Usage: "print the current configuration as a command file that apply accepts", Action: configShow},
			{Name: "history", Usage: "every change: when, who, how, the command and the previous value (newest first)",
				Flags: []cli.Flag{&cli.IntFlag{Name: "last", Usage: "only the newest N (0: all)"}}, Action: configHistory},
			{Name: "apply", Usage: "apply a command file (- for stdin) as one atomic change: any bad line and nothing is applied",
				ArgsUsage: "FILE", Action: configApply},
			{Name: "hash", Usage: "hash an admin secret (terminal, or stdin's first line) for `admin secret ADDRESS HASH`", Action: configHash},
		},
	}
}

// tableLister reads whole tables with a scan (the config, mailbox and pop3
// tables are small: rows per mailbox, account and change).
type tableLister struct{ *client.Client }

// maxListed bounds the rows one table read returns.
const maxListed = 1 << 20

func (l tableLister) Rows(ctx context.Context, t model.Table) ([]wire.Row, error) {
	keys, err := l.ScanKeys(ctx, t, maxListed)
	if err != nil {
		return nil, err
	}
	rows := make([]wire.Row, 0, len(keys))
	for _, k := range keys {
		r, err := l.FindKey(ctx, t, k)
		if err != nil {
			return nil, fmt.Errorf("read %s row %s: %w", t, k, err)
		}
		rows = append(rows, *r)
	}
	return rows, nil
}

func configShow(c *cli.Context) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	s, err := config.Show(ctx, tableLister{cl})
	if err != nil {
		return err
	}
	_, err = io.WriteString(c.App.Writer, s)
	return err
}

func configHistory(c *cli.Context) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	hist, err := config.History(ctx, tableLister{cl})
	if err != nil {
		return err
	}
	if n := c.Int("last"); n > 0 && n < len(hist) {
		hist = hist[:n]
	}
	for _, h := range hist {
		fmt.Fprintf(c.App.Writer, "%s who=%s via=%q line=%q previous=%q\n",
			h.When.UTC().Format("2006-01-02T15:04:05.000Z"), h.Who, h.Via, h.Line, h.Previous)
	}
	return nil
}

// configApply prints each line's result; exit status 1 if any line failed
// (then nothing was applied).
func configApply(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("config apply: want FILE (- for stdin)")
	}
	text, err := readContent(c, c.Args().First())
	if err != nil {
		return err
	}
	lines, err := config.Parse(string(text))
	if err != nil {
		return cli.Exit("dbctl: "+err.Error()+"; nothing applied", 1)
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	p, err := config.Translate(ctx, cl, lines, config.Source{Who: "dbctl", Via: "dbctl", Now: time.Now()})
	if err != nil {
		return err
	}
	if p.OK() {
		if _, err := cl.Batch(ctx, p.Requests); err != nil {
			return fmt.Errorf("apply: %w; nothing applied", err)
		}
	}
	fmt.Fprint(c.App.Writer, config.Report(p))
	if !p.OK() {
		return cli.Exit("dbctl: config apply: a line failed; nothing applied", 1)
	}
	return nil
}

func configHash(c *cli.Context) error {
	pw, err := readPassword(c)
	if err != nil {
		return err
	}
	h, err := passwd.Hash(pw, passwd.Default)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, h)
	return nil
}
