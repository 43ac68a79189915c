package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

// Lister reads rows by key and reads whole small tables (config,
// mailbox, pop3); dbctl implements Rows with a scan.
type Lister interface {
	Reader
	Rows(ctx context.Context, t model.Table) ([]wire.Row, error)
}

// History returns every change the config table records, newest first.
// Rows of another kind are skipped.
func History(ctx context.Context, l Lister) ([]Change, error) {
	rows, err := l.Rows(ctx, model.Config)
	if err != nil {
		return nil, fmt.Errorf("read the config table: %w", err)
	}
	var out []Change
	for _, r := range rows {
		if c, err := ParseChange(r.Content); err == nil {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int {
		if c := b.When.Compare(a.When); c != 0 {
			return c
		}
		return strings.Compare(a.Line, b.Line)
	})
	return out, nil
}

// Show returns the current configuration as a command file that Parse and
// Translate accept, so that show, then apply of its output, changes no
// setting. It covers admins and their secrets, mailboxes, accounts'
// mailboxes, header filters, SMS rules, zones and forward copies (all
// linked from rows it can list), and the spamd and SMS list entries that
// any config change named (list rows are not linked from anything; an
// entry made only by `spamd list`, a digest reply or `smsd list` is not
// shown).
func Show(ctx context.Context, l Lister) (string, error) {
	var b strings.Builder
	b.WriteString("# twinmx configuration (dbctl config show): apply with dbctl config apply FILE\n")
	cfgRows, err := l.Rows(ctx, model.Config)
	if err != nil {
		return "", fmt.Errorf("read the config table: %w", err)
	}
	var admins, history []string
	for _, r := range cfgRows {
		if a, ok := ParseAdminContent(r.Content); ok && model.IsMember(r.State.Col(ColAdmin)) {
			admins = append(admins, a)
		} else if c, err := ParseChange(r.Content); err == nil {
			history = append(history, c.Line)
		}
	}
	slices.Sort(admins)
	if len(admins) > 0 {
		b.WriteString("\n# admins\n")
	}
	for _, a := range admins {
		fmt.Fprintf(&b, "admin add %s\n", Quote(a))
		h, ok, err := AdminSecretHash(ctx, l, a)
		if err != nil {
			return "", err
		}
		if ok {
			fmt.Fprintf(&b, "admin secret %s %s\n", Quote(a), Quote(h))
		}
	}

	boxRows, err := l.Rows(ctx, model.Mailbox)
	if err != nil {
		return "", fmt.Errorf("read the mailbox table: %w", err)
	}
	slices.SortFunc(boxRows, func(a, b wire.Row) int { return strings.Compare(string(a.Content), string(b.Content)) })
	byKey := map[model.Key]string{}
	if len(boxRows) > 0 {
		b.WriteString("\n# mailboxes\n")
	}
	for _, r := range boxRows {
		byKey[model.KeyOf(model.Mailbox, r.Content)] = string(r.Content)
		fmt.Fprintf(&b, "mailbox create %s\n", Quote(string(r.Content)))
	}

	accts, err := l.Rows(ctx, model.POP3)
	if err != nil {
		return "", fmt.Errorf("read the pop3 table: %w", err)
	}
	var acctLines []string
	for _, r := range accts {
		login, err := model.ParseAccountContent(r.Content)
		if err != nil {
			continue
		}
		for _, k := range model.AccountMailboxes(r.State) {
			if mb, ok := byKey[k]; ok {
				acctLines = append(acctLines, "mailbox add "+Quote(login)+" "+Quote(mb))
			}
		}
	}
	slices.Sort(acctLines)
	if len(acctLines) > 0 {
		b.WriteString("\n# accounts\n")
	}
	for _, s := range acctLines {
		b.WriteString(s + "\n")
	}

	for _, r := range boxRows {
		lines, err := mailboxLines(ctx, l, string(r.Content), r.State)
		if err != nil {
			return "", err
		}
		if len(lines) > 0 {
			fmt.Fprintf(&b, "\n# %s\n%s", r.Content, strings.Join(lines, ""))
		}
	}

	lists, err := listLines(ctx, l, history)
	if err != nil {
		return "", err
	}
	if len(lists) > 0 {
		b.WriteString("\n# list entries\n" + strings.Join(lists, ""))
	}
	return b.String(), nil
}

// mailboxLines returns the settings linked from one mailbox row.
func mailboxLines(ctx context.Context, l Lister, mb string, st model.State) ([]string, error) {
	var out []string
	if p, _ := model.PolicyOf(st.Col(model.ColPolicy)); p != model.PolicyFilter {
		out = append(out, "policy "+Quote(mb)+" "+p.String()+"\n")
	}
	for _, h := range model.HeaderFilters(st) {
		out = append(out, "filter add "+Quote(mb)+" "+Quote(h)+"\n")
	}
	links := smsrules.MailboxLinks(st)
	text := func(k model.Key) ([]byte, bool, error) {
		row, err := l.FindKey(ctx, model.Text, k)
		if errors.Is(err, client.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("read text row %s: %w", k, err)
		}
		return row.Content, true, nil
	}
	if links.HasZone {
		if c, ok, err := text(links.Zone); err != nil {
			return nil, err
		} else if z, perr := smsrules.ParseZone(c); ok && perr == nil {
			out = append(out, "zone "+Quote(mb)+" "+Quote(z)+"\n")
		}
	}
	var rules []string
	for _, k := range links.Rules {
		c, ok, err := text(k)
		if err != nil {
			return nil, err
		}
		if r, perr := smsrules.ParseRule(c); ok && perr == nil {
			rules = append(rules, RuleLine(r)+"\n")
		}
	}
	slices.Sort(rules)
	out = append(out, rules...)
	for _, k := range links.Forwards {
		c, ok, err := text(k)
		if err != nil {
			return nil, err
		}
		if to, perr := smsrules.ParseForward(c); ok && perr == nil {
			out = append(out, "forward add "+Quote(mb)+" "+Quote(to)+"\n")
		}
	}
	return out, nil
}

// listLines returns the current state of every list entry a change named.
func listLines(ctx context.Context, l Lister, history []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, h := range history {
		lines, err := Parse(h)
		if err != nil || len(lines) != 1 || lines[0].Err != nil {
			continue
		}
		c := lines[0].Cmd
		switch c.Kind {
		case Allow, Block, Unlist:
			id := "s\x00" + c.Mailbox + "\x00" + c.Value
			if seen[id] {
				continue
			}
			seen[id] = true
			row, ok, err := find(ctx, l, model.Text, SpamListContent(c.Mailbox, c.Value))
			if err != nil {
				return nil, err
			}
			if k := ""; ok {
				if k = listKind(row.State.Col(ColSpamList)); k != "none" {
					out = append(out, k+" "+Quote(c.Mailbox)+" "+Quote(c.Value)+"\n")
				}
			}
		case ListAdd, ListRemove:
			id := "l\x00" + c.Mailbox + "\x00" + c.List + "\x00" + c.Value
			if seen[id] {
				continue
			}
			seen[id] = true
			row, ok, err := find(ctx, l, model.Text, smsrules.ListEntryContent(c.Mailbox, c.List, c.Value))
			if err != nil {
				return nil, err
			}
			if ok && model.IsMember(row.State.Col(smsrules.ColList)) {
				out = append(out, "list add "+Quote(c.Mailbox)+" "+Quote(c.List)+" "+Quote(c.Value)+"\n")
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
