package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/config/smsrules"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// The mail commands: the operator's view of mailboxes and received mail,
// and manual verdicts (SPEC §10).

func mailboxCmd() *cli.Command {
	return &cli.Command{
		Name:  "mailbox",
		Usage: "receiving mailboxes",
		Subcommands: []*cli.Command{{
			Name: "add", Usage: "create the mailbox ADDRESS (smtpd accepts mail for it); prints its key",
			ArgsUsage: "ADDRESS",
			Flags:     []cli.Flag{&cli.StringFlag{Name: "policy", Value: "filter", Usage: "spam policy: " + policyUsage}},
			Action:    mailboxAdd,
		}, {
			Name: "list", Usage: "every mailbox: ADDRESS POLICY, then the header fields dropped on retrieval",
			Action: mailboxList,
		}, {
			Name: "policy", Usage: "show the mailbox's spam policy, or set it to POLICY (" + policyUsage + ")",
			ArgsUsage: "ADDRESS [POLICY]",
			Action:    mailboxPolicy,
		}, {
			Name: "filter", Usage: "drop header field HEADER from the mailbox's mail on retrieval (POP3, IMAP)",
			ArgsUsage: "ADDRESS HEADER",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "remove", Usage: "stop dropping HEADER"}},
			Action:    mailboxFilter,
		}},
	}
}

func mailboxAdd(c *cli.Context) error {
	if c.NArg() != 1 || strings.TrimSpace(c.Args().First()) == "" {
		return usageError("mailbox add: want ADDRESS")
	}
	content, err := newMailboxAddress(c.Args().First())
	if err != nil {
		return usageError("mailbox add: %v", err)
	}
	p, err := model.ParsePolicy(c.String("policy"))
	if err != nil {
		return usageError("mailbox add: --policy: %v", err)
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	reqs := []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: content}}
	if c.IsSet("policy") {
		reqs = append(reqs, setPolicy(content, p, time.Now()))
	}
	res, err := cl.Batch(ctx, reqs)
	if err != nil {
		return fmt.Errorf("add mailbox %s: %w", content, err)
	}
	state := "exists"
	if res[0].New {
		state = "added"
	}
	fmt.Fprintf(c.App.Writer, "%s %s %s\n", model.KeyOf(model.Mailbox, content), quote(string(content)), state)
	return nil
}

// newMailboxAddress checks an address a new mailbox is made for, as
// `config apply` does (mailbox create), and returns its mailbox row
// content. Checking only for an '@' let "a b@x" or an address with
// control bytes in: smtpd can never deliver to it, `config show` printed a
// line `config apply` refuses, and listing it wrote its bytes raw to the
// operator's terminal. Surrounding blanks and <> are dropped first.
func newMailboxAddress(arg string) ([]byte, error) {
	content := model.MailboxContent(arg)
	// Beyond config's check: no format characters either (a bidi
	// override reorders what the operator reads).
	if err := smsrules.CheckAddress(string(content)); err != nil || strings.ContainsFunc(string(content), notPrint) ||
		!utf8.Valid(content) {
		return nil, fmt.Errorf("%s is not an address (LOCAL@DOMAIN, no blanks, controls or <>\",;:)", quote(arg))
	}
	return content, nil
}

func notPrint(r rune) bool { return !unicode.IsPrint(r) }

// policyUsage names the policies for the help texts.
const policyUsage = "filter (every check, the default), nogreylist (no retry asked of first contacts), " +
	"accept (never rejected or delayed by the content check: postmaster, abuse)"

func setPolicy(content []byte, p model.Policy, at time.Time) wire.Request {
	return wire.Request{Op: wire.OpSet, Table: model.Mailbox, Ref: wire.Ref{Content: content},
		Name: model.ColPolicy, Value: model.PolicyValue(at, p)}
}

func mailboxList(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError("mailbox list: no arguments")
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	rows, err := mailboxRows(ctx, cl)
	if err != nil {
		return err
	}
	for _, row := range rows {
		p, _ := model.PolicyOf(row.State.Col(model.ColPolicy))
		// quote: a row stored before addresses were checked may hold
		// bytes that must not reach the terminal raw.
		line := fmt.Sprintf("%s %s", quote(string(row.Content)), p)
		for _, f := range model.HeaderFilters(row.State) {
			line += " drop:" + f
		}
		fmt.Fprintln(c.App.Writer, line)
	}
	return nil
}

// mailboxPolicy shows or sets a mailbox's spam policy. Setting stamps it
// with the time, so the newest setting wins on both sites.
func mailboxPolicy(c *cli.Context) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return usageError("mailbox policy: want ADDRESS [POLICY]")
	}
	content := model.MailboxContent(c.Args().First())
	var p model.Policy
	if c.NArg() == 2 {
		var err error
		if p, err = model.ParsePolicy(c.Args().Get(1)); err != nil {
			return usageError("mailbox policy: %v", err)
		}
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	if c.NArg() == 2 {
		res, err := cl.Batch(ctx, []wire.Request{setPolicy(content, p, time.Now())})
		if err != nil {
			return fmt.Errorf("set policy of %s: %w", content, err)
		}
		if res[0].NotFound {
			return notFound("mailbox policy: no mailbox %s", content)
		}
	}
	row, err := cl.Find(ctx, model.Mailbox, content)
	if errors.Is(err, client.ErrNotFound) {
		return notFound("mailbox policy: no mailbox %s", content)
	}
	if err != nil {
		return fmt.Errorf("read mailbox %s: %w", content, err)
	}
	cur, known := model.PolicyOf(row.State.Col(model.ColPolicy))
	note := ""
	if !known {
		note = " (set by a newer version; read here as filter)"
	}
	fmt.Fprintf(c.App.Writer, "%s %s%s\n", quote(string(content)), cur, note)
	return nil
}

func mailboxFilter(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError("mailbox filter: want ADDRESS HEADER")
	}
	reqs, err := mailbox.SetHeaderFilter(c.Args().Get(0), c.Args().Get(1), !c.Bool("remove"), time.Now())
	if err != nil {
		return usageError("mailbox filter: %v", err)
	}
	return userBatch(c, "mailbox filter", reqs)
}

func verdictCmd() *cli.Command {
	return &cli.Command{
		Name:      "verdict",
		Usage:     "set an operator verdict: accept, reject or retry a mail (for one mailbox, or every mailbox it was sent to)",
		ArgsUsage: "accept|reject|retry MAILKEY [MAILBOX]",
		Description: "MAILKEY is the first field of `dbctl mails`. An operator verdict outranks the filter's, and a later\n" +
			"operator verdict outranks an earlier one. Without MAILBOX, the newest --scan receive rows are searched.",
		Flags:  []cli.Flag{&cli.IntFlag{Name: "scan", Value: 5000, Usage: "receive rows to search when MAILBOX is not given (1 to 1000000)"}},
		Action: verdict,
	}
}

func verdict(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 2 || len(args) > 3 {
		return usageError("verdict: want accept|reject|retry MAILKEY [MAILBOX]")
	}
	v, err := model.ParseVerdict(args[0])
	if err != nil {
		return usageError("verdict: %v", err)
	}
	mk, err := model.ParseKey(args[1])
	if err != nil {
		return usageError("verdict: MAILKEY: %v", err)
	}
	if len(args) == 2 {
		// --scan 0 or below found nothing and said "no receive row":
		// a usage mistake reported as a missing mail.
		if err := checkScan("verdict", "--scan", c.Int("scan"), false); err != nil {
			return err
		}
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	var receives []model.Key
	if len(args) == 3 {
		mb := model.KeyOf(model.Mailbox, model.MailboxContent(args[2]))
		receives = []model.Key{model.KeyOf(model.Receive, model.ReceiveContent(mk, mb))}
	} else if receives, err = receivesOf(ctx, cl, mk, c.Int("scan")); err != nil {
		return err
	}
	if len(receives) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "dbctl: no receive row for mail %s\n", mk)
		return cli.Exit("", ExitNotFound)
	}
	val := model.EncodeVerdict(model.SourceOperator, model.Epoch(time.Now()), v)
	reqs := make([]wire.Request, len(receives))
	for i, k := range receives {
		reqs[i] = wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: model.ColVerdict, Value: val}
	}
	res, err := cl.Batch(ctx, reqs)
	if err != nil {
		return fmt.Errorf("set verdict: %w", err)
	}
	found := 0
	for i, r := range res {
		if r.NotFound {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: receive row %s not found\n", receives[i])
			continue
		}
		found++
		fmt.Fprintf(c.App.Writer, "%s %s\n", receives[i], v)
	}
	if found == 0 {
		return cli.Exit("", ExitNotFound)
	}
	return nil
}

// receivesOf finds the receive rows of mail mk among the newest n.
func receivesOf(ctx context.Context, cl *client.Client, mk model.Key, n int) ([]model.Key, error) {
	var out []model.Key
	err := eachNewest(ctx, cl, n, func(r receiveInfo) error {
		if r.mail == mk {
			out = append(out, r.key)
		}
		return nil
	})
	return out, err
}

// receiveInfo is a receive row with its content parsed.
type receiveInfo struct {
	key, mail, mailbox model.Key
	state              model.State
}

// eachNewest calls fn for the newest n receive rows, newest first.
func eachNewest(ctx context.Context, cl *client.Client, n int, fn func(receiveInfo) error) error {
	return scanNewest(ctx, cl, model.Receive, n, func(r *wire.Row) error {
		k := r.Key
		row, err := cl.FindKey(ctx, model.Receive, k)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read receive row %s: %w", k, err)
		}
		mk, mb, err := model.ParseReceiveContent(row.Content)
		if err != nil {
			return fmt.Errorf("receive row %s: %w", k, err)
		}
		return fn(receiveInfo{key: k, mail: mk, mailbox: mb, state: row.State})
	})
}

func mailsCmd() *cli.Command {
	return &cli.Command{
		Name: "mails",
		Usage: "the newest received mails, one line each: MAILKEY from=… to=… subject=… verdict=… backed-up=… ack=… [reason=…]" +
			" (one line per mailbox a mail was sent to)",
		Flags:  []cli.Flag{&cli.IntFlag{Name: "last", Value: 20, Usage: "how many receive rows (0 to 1000000)"}},
		Action: mails,
	}
}

func mails(c *cli.Context) error {
	if err := checkScan("mails", "--last", c.Int("last"), true); err != nil {
		return err
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	return eachNewest(ctx, cl, c.Int("last"), func(r receiveInfo) error {
		from, subject := "?", "?"
		if h, err := headerOf(ctx, cl, r.mail); err == nil {
			from, subject = h.Get("From"), h.Get("Subject")
			if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
				subject = d
			}
		}
		to := "?"
		if row, err := cl.FindKey(ctx, model.Mailbox, r.mailbox); err == nil {
			to = string(row.Content)
		}
		reason := ""
		if rk, ok := model.LatestReason(r.state); ok {
			if row, err := cl.FindKey(ctx, model.Text, rk); err == nil {
				if why, ok := model.ParseReason(row.Content); ok {
					reason = " reason=" + quote(why)
				}
			}
		}
		fmt.Fprintf(c.App.Writer, "%s from=%s to=%s subject=%s verdict=%s backed-up=%s ack=%s%s\n",
			r.mail, quote(from), quote(to), quote(subject), verdictText(r.state.Cols[model.ColVerdict]),
			yesNo(r.state.Cols[model.ColBackedUp]), yesNo(r.state.Cols[model.ColAcknowledged]), reason)
		return nil
	})
}

// headerOf reads and parses the header of mail mk.
func headerOf(ctx context.Context, cl *client.Client, mk model.Key) (mail.Header, error) {
	m, err := cl.FindKey(ctx, model.Mail, mk)
	if err != nil {
		return nil, err
	}
	hk, _, err := model.ParseMailContent(m.Content)
	if err != nil {
		return nil, err
	}
	h, err := cl.FindKey(ctx, model.Header, hk)
	if err != nil {
		return nil, err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(h.Content))
	if err != nil {
		return nil, err
	}
	return msg.Header, nil
}

func verdictText(x uint64) string {
	src, _, v, ok := model.DecodeVerdict(x)
	if !ok {
		return "none"
	}
	return v.String() + "/" + src.String()
}

func yesNo(x uint64) string {
	if x == model.FlagSet {
		return "yes"
	}
	return "no"
}

// quote makes a header value one shell-safe token: quoted when it has
// spaces or quotes, with control characters escaped.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	if strings.ContainsAny(s, " \t\"'\\") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}
