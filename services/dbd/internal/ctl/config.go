package ctl

import (
	"context"
	"errors"
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
			{Name: "apply", Usage: "apply a command file (- for stdin): any bad line and nothing is applied; a file of more than 4096 operations goes in several atomic parts",
				ArgsUsage: "FILE", Action: configApply},
			{Name: "hash", Usage: "hash an admin secret (terminal, or stdin's first line) for `admin secret ADDRESS HASH`", Action: configHash},
		},
	}
}

// tableLister reads whole tables with a paged scan (client.ScanKeysAll:
// the config, mailbox and pop3 tables are small next to receive: rows
// per mailbox, account and change). A single scan gave at most the newest
// 10000 rows, so config show refused a config table of 10000 rows or
// more (a row for every command ever applied) and history showed only
// the newest; pages go on below the previous one's smallest row number.
// A table of more than maxTableRows is refused, not cut: a config show
// without the oldest config rows (the admins) would be applied as the
// whole configuration.
type tableLister struct {
	*client.Client
}

// keys returns the key of every row of table t, newest first; a table
// of more than maxTableRows is an error wrapping client.ErrScanBound.
func (l tableLister) keys(ctx context.Context, t model.Table) ([]model.Key, error) {
	keys, err := l.ScanKeysAll(ctx, t, maxTableRows)
	if errors.Is(err, client.ErrScanBound) {
		return nil, fmt.Errorf("the %s table has more than %d rows, the most dbctl reads of one table: %w", t, maxTableRows, err)
	}
	return keys, err
}

// maxTableRows bounds the rows tableLister reads of one table (each is
// then read by key): a million config changes or accounts is far more
// than a site makes, and reading them takes minutes.
const maxTableRows = 1000000

func (l tableLister) Rows(ctx context.Context, t model.Table) ([]wire.Row, error) {
	keys, err := l.keys(ctx, t)
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
	s, err := config.Show(ctx, tableLister{Client: cl})
	if err != nil {
		return err
	}
	if _, err := io.WriteString(c.App.Writer, s); err != nil {
		return err
	}
	// show promises a file apply accepts: say so when this one is not.
	if _, err := config.ParseLarge(s); err != nil {
		return cli.Exit("dbctl: config show: the output is more than config apply accepts ("+err.Error()+"): apply it in pieces", 1)
	}
	return nil
}

func configHistory(c *cli.Context) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	hist, err := config.History(ctx, tableLister{Client: cl})
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
//
// The file may be larger than a mailed one (config.ParseLarge): `config
// show` of a big site is over config.MaxCommands. Every line is checked
// before anything is written, but a batch over wire.MaxBatchOps goes in
// several atomic parts, so a part that fails leaves the parts before it
// applied: the error names the lines that were.
func configApply(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("config apply: want FILE (- for stdin)")
	}
	text, err := readContent(c, c.Args().First())
	if err != nil {
		return err
	}
	lines, err := config.ParseLarge(string(text))
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
	if !p.OK() {
		fmt.Fprint(c.App.Writer, config.Report(p))
		return cli.Exit("dbctl: config apply: a line failed; nothing applied", 1)
	}
	parts := p.Parts(maxConfigOps)
	for i, part := range parts {
		if _, err := cl.Batch(ctx, part.Requests); err != nil {
			if i == 0 {
				return fmt.Errorf("apply: %w; nothing applied", err)
			}
			last := p.Results[part.First-1].Line.N
			return fmt.Errorf("apply part %d of %d (file lines %d to %d): %w; file lines 1 to %d (%d commands, parts 1 to %d) were applied, "+
				"the later parts were not (nor part %d, unless the connection broke after dbd applied it): "+
				"apply the file again once the cause is fixed (a command applied again sets the same value)",
				i+1, len(parts), p.Results[part.First].Line.N, p.Results[part.End-1].Line.N, err, last, part.First, i, i+1)
		}
	}
	fmt.Fprint(c.App.Writer, config.Report(p))
	if len(parts) > 1 {
		fmt.Fprintf(c.App.Writer, "in %d atomic parts (dbd takes at most %d operations in one)\n", len(parts), maxConfigOps)
	}
	return nil
}

// maxConfigOps is the most requests configApply sends in one batch.
const maxConfigOps = wire.MaxBatchOps

// adminSecret is the limit of `config hash`: what stdin was read through
// (a longer secret was cut there and hashed).
var adminSecret = passwordLimit{max: 4096}

func configHash(c *cli.Context) error {
	pw, err := readPassword(c, adminSecret)
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
