package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	rules "github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

// ruleCommands write a mailbox's rows (docs/smsd.md). They need a key with
// role admin: they set columns on the mailbox row.
func ruleCommands() []*cli.Command {
	mbox := &cli.StringFlag{Name: "mailbox", Usage: "the mailbox address", Required: true}
	name := &cli.StringFlag{Name: "name", Usage: "the rule's name (a-z 0-9 . _ -)", Required: true}
	return []*cli.Command{
		{Name: "rule", Usage: "SMS rules of a mailbox", Subcommands: []*cli.Command{
			{Name: "set", Usage: "add a rule, or replace the mailbox's rule of the same name",
				Flags: append(dbFlags(), mbox, name,
					&cli.StringSliceFlag{Name: "from", Usage: "trigger: address, @domain, pattern with * ?, list:NAME or * (repeat; none: every sender)"},
					&cli.StringSliceFlag{Name: "window", Usage: "\"DAYS HH:MM-HH:MM\" in the mailbox's zone (repeat; none: always)"},
					&cli.StringSliceFlag{Name: "phone", Usage: "+NUMBER (repeat)", Required: true},
					&cli.StringFlag{Name: "template", Usage: "text with {from} {subject} {line} {mailbox} {rule} {time}"}),
				Action: ruleSet},
			{Name: "remove", Usage: "switch the mailbox's rule of this name off", Flags: append(dbFlags(), mbox, name), Action: ruleRemove},
			{Name: "show", Usage: "print the mailbox's SMS rules, zone and forward copies", Flags: append(dbFlags(), mbox), Action: ruleShow},
		}},
		{Name: "zone", Usage: "set the mailbox's time zone: zone --mailbox M Europe/Berlin", ArgsUsage: "ZONE",
			Flags: append(dbFlags(), mbox), Action: func(c *cli.Context) error {
				return write(c, func(ctx context.Context, db *client.Client, mb string, now time.Time) ([]wire.Request, error) {
					return rules.SetZone(mb, c.Args().First(), now)
				})
			}},
		{Name: "list", Usage: "entries of a mailbox's sender list", Subcommands: []*cli.Command{
			listCmd("add", true), listCmd("remove", false)}},
		{Name: "forward", Usage: "forward copies of every accepted mail", Subcommands: []*cli.Command{
			forwardCmd("add", true), forwardCmd("remove", false)}},
	}
}

func listCmd(verb string, member bool) *cli.Command {
	return &cli.Command{Name: verb, Usage: verb + " addresses or @domains: list " + verb + " --mailbox M --list NAME ENTRY...", ArgsUsage: "ENTRY...",
		Flags: append(dbFlags(), &cli.StringFlag{Name: "mailbox", Required: true}, &cli.StringFlag{Name: "list", Required: true}),
		Action: func(c *cli.Context) error {
			return write(c, func(ctx context.Context, db *client.Client, mb string, now time.Time) ([]wire.Request, error) {
				var reqs []wire.Request
				for _, e := range c.Args().Slice() {
					r, err := rules.SetListEntry(mb, c.String("list"), e, member, now)
					if err != nil {
						return nil, err
					}
					reqs = append(reqs, r...)
				}
				return reqs, nil
			})
		}}
}

func forwardCmd(verb string, on bool) *cli.Command {
	return &cli.Command{Name: verb, Usage: verb + " a forward copy: forward " + verb + " --mailbox M ADDRESS", ArgsUsage: "ADDRESS",
		Flags: append(dbFlags(), &cli.StringFlag{Name: "mailbox", Required: true}),
		Action: func(c *cli.Context) error {
			return write(c, func(ctx context.Context, db *client.Client, mb string, now time.Time) ([]wire.Request, error) {
				return rules.SetForward(mb, c.Args().First(), on, now)
			})
		}}
}

// write connects, builds the batch and applies it; the mailbox must exist.
func write(c *cli.Context, build func(ctx context.Context, db *client.Client, mailbox string, now time.Time) ([]wire.Request, error)) error {
	db, err := dialDB(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	mb := string(model.MailboxContent(c.String("mailbox")))
	if _, err := db.FindMeta(ctx, model.Mailbox, model.KeyOf(model.Mailbox, []byte(mb))); errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("no mailbox %s here", mb)
	} else if err != nil {
		return err
	}
	reqs, err := build(ctx, db, mb, time.Now())
	if err != nil {
		return err
	}
	if len(reqs) == 0 {
		return errors.New("nothing to do")
	}
	if _, err := db.Batch(ctx, reqs); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %d changes written\n", mb, len(reqs))
	return nil
}

// rowFinder is what the rule commands read from dbd (*client.Client).
type rowFinder interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
}

// activeRules returns the mailbox's rules that are on, with their keys.
// A linked rule row that is not here (replication brings the link first)
// is skipped; any other read error fails, since rule set and rule remove
// would otherwise leave a rule of the name they switch off on.
func activeRules(ctx context.Context, db rowFinder, mb string) (rules.Links, map[model.Key]rules.Rule, error) {
	row, err := db.FindKey(ctx, model.Mailbox, model.KeyOf(model.Mailbox, []byte(mb)))
	if err != nil {
		return rules.Links{}, nil, fmt.Errorf("read mailbox %s: %w", mb, err)
	}
	l := rules.MailboxLinks(row.State)
	out := map[model.Key]rules.Rule{}
	for _, k := range l.Rules {
		t, err := db.FindKey(ctx, model.Text, k)
		if errors.Is(err, client.ErrNotFound) {
			continue
		} else if err != nil {
			return rules.Links{}, nil, fmt.Errorf("read rule %s of mailbox %s: %w", model.LinkColumn(rules.RulePrefix, k), mb, err)
		}
		if r, err := rules.ParseRule(t.Content); err == nil {
			out[k] = r
		}
	}
	return l, out, nil
}

func ruleSet(c *cli.Context) error {
	return write(c, func(ctx context.Context, db *client.Client, mb string, now time.Time) ([]wire.Request, error) {
		r := rules.Rule{Mailbox: mb, Name: c.String("name")}
		for _, f := range c.StringSlice("from") {
			s, err := rules.ParseSender(f)
			if err != nil {
				return nil, err
			}
			r.Senders = append(r.Senders, s)
		}
		for _, w := range c.StringSlice("window") {
			win, err := rules.ParseWindow(w)
			if err != nil {
				return nil, err
			}
			r.Windows = append(r.Windows, win)
		}
		for _, p := range c.StringSlice("phone") {
			if err := rules.CheckPhone(p); err != nil {
				return nil, err
			}
			r.Phones = append(r.Phones, p)
		}
		t, err := rules.ParseTemplate(c.String("template"))
		if err != nil {
			return nil, err
		}
		r.Template = t
		// Canonical: what ParseRule reads back from the row.
		if r, err = rules.ParseRule(r.Content()); err != nil {
			return nil, err
		}
		_, cur, err := activeRules(ctx, db, mb)
		if err != nil {
			return nil, err
		}
		var replace []model.Key
		for k, old := range cur {
			if old.Name == r.Name {
				replace = append(replace, k)
			}
		}
		return rules.SetRule(r, replace, now)
	})
}

func ruleRemove(c *cli.Context) error {
	return write(c, func(ctx context.Context, db *client.Client, mb string, now time.Time) ([]wire.Request, error) {
		_, cur, err := activeRules(ctx, db, mb)
		if err != nil {
			return nil, err
		}
		var keys []model.Key
		for k, r := range cur {
			if r.Name == c.String("name") {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%s has no rule %q", mb, c.String("name"))
		}
		return rules.RemoveRules(mb, keys, now), nil
	})
}

func ruleShow(c *cli.Context) error {
	db, err := dialDB(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	return showRules(ctx, db, c.App.Writer, string(model.MailboxContent(c.String("mailbox"))))
}

// showRules prints mailbox mb's zone, forward copies and rules. A linked
// row not here yet is left out; any other read error fails, since
// printing "zone UTC" or no forward for a row dbd did not answer would
// tell the operator a setting that is not the mailbox's.
func showRules(ctx context.Context, db rowFinder, w io.Writer, mb string) error {
	l, cur, err := activeRules(ctx, db, mb)
	if err != nil {
		return err
	}
	zone := "UTC"
	if l.HasZone {
		t, err := db.FindKey(ctx, model.Text, l.Zone)
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("read the zone of mailbox %s: %w", mb, err)
		} else if err == nil {
			zone, _ = rules.ParseZone(t.Content)
		}
	}
	fmt.Fprintf(w, "mailbox %s\nzone %s\n", mb, zone)
	for _, k := range l.Forwards {
		t, err := db.FindKey(ctx, model.Text, k)
		if errors.Is(err, client.ErrNotFound) {
			continue
		} else if err != nil {
			return fmt.Errorf("read a forward of mailbox %s: %w", mb, err)
		}
		to, _ := rules.ParseForward(t.Content)
		fmt.Fprintf(w, "forward %s\n", to)
	}
	// By name (then content): cur is a map, and the same rules must print
	// the same way every time (an operator diffs them).
	list := slices.Collect(maps.Values(cur))
	slices.SortFunc(list, func(a, b rules.Rule) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), bytes.Compare(a.Content(), b.Content()))
	})
	for _, r := range list {
		fmt.Fprintf(w, "\n%s", r.Content())
	}
	return nil
}
