package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
)

// listCommand edits a mailbox's allow and block lists, which the daemon
// reads before every other signal. The lists are rows in dbd, so every
// instance on both sites sees a change.
func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "allow or block a sender (address or @domain) for a mailbox, or remove the entry",
		ArgsUsage: "allow|block|remove MAILBOX SENDER",
		Flags:     dbFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 3 {
				return cli.Exit("spamd list: want allow|block|remove MAILBOX SENDER", 2)
			}
			kinds := map[string]uint64{"allow": judge.ListAllow, "block": judge.ListBlock, "remove": judge.ListRemoved}
			kind, ok := kinds[c.Args().Get(0)]
			mailbox, sender := string(model.MailboxContent(c.Args().Get(1))), strings.Trim(c.Args().Get(2), "<> ")
			if !ok || !strings.Contains(mailbox, "@") || !strings.Contains(sender, "@") {
				return cli.Exit("spamd list: want allow|block|remove MAILBOX SENDER (SENDER: an address or @domain)", 2)
			}
			db, err := dialDB(c, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			content := judge.ListContent(mailbox, sender)
			_, err = db.Batch(ctx, []wire.Request{
				{Op: wire.OpFindOrInsert, Table: model.Text, Content: content},
				{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: content}, Name: "list", Value: judge.ListValue(time.Now(), kind)},
			})
			if err != nil {
				return fmt.Errorf("set list entry: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "%s: %s %s\n", mailbox, c.Args().Get(0), sender)
			return nil
		},
	}
}
