package ctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// The user commands: POP3/IMAP accounts (SPEC §8). A password is read from
// the terminal (asked twice) or, when stdin is not a terminal, from the
// first line of stdin — never from a flag, which would leave it in shell
// history and in the process list.

func userCmd() *cli.Command {
	mbFlag := &cli.StringSliceFlag{Name: "mailbox", Usage: "a mailbox ADDRESS the account reads (repeat for aliases)"}
	return &cli.Command{
		Name:  "user",
		Usage: "POP3/IMAP accounts",
		Subcommands: []*cli.Command{{
			Name: "add", Usage: "create account LOGIN (or give it more mailboxes) and set its password (from the terminal or stdin)",
			ArgsUsage: "LOGIN --mailbox ADDRESS...", Flags: []cli.Flag{mbFlag,
				&cli.BoolFlag{Name: "keep-password", Usage: "only add mailboxes; do not read or change the password"}},
			Action: userAdd,
		}, {
			Name: "passwd", Usage: "set the password of the existing account LOGIN (from the terminal or stdin)", ArgsUsage: "LOGIN", Action: userPasswd,
		}, {
			Name: "remove-mailbox", Usage: "stop LOGIN from reading mailbox ADDRESS", ArgsUsage: "LOGIN ADDRESS", Action: userRemoveMailbox,
		}, {
			Name: "show", Usage: "print LOGIN's mailboxes and when its password was set", ArgsUsage: "LOGIN", Action: userShow,
		}},
	}
}

func userAdd(c *cli.Context) error {
	// urfave/cli stops at the first argument, and the documented form is
	// "user add LOGIN --mailbox ADDRESS": read flags after LOGIN here.
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageError("user add: want LOGIN --mailbox ADDRESS...")
	}
	login := args[0]
	mailboxes, keep := c.StringSlice("mailbox"), c.Bool("keep-password")
	for rest := args[1:]; len(rest) > 0; rest = rest[1:] {
		switch a := rest[0]; {
		case a == "--mailbox" || a == "-mailbox":
			if len(rest) < 2 {
				return usageError("user add: --mailbox needs an ADDRESS")
			}
			mailboxes, rest = append(mailboxes, rest[1]), rest[1:]
		case strings.HasPrefix(a, "--mailbox="):
			mailboxes = append(mailboxes, strings.TrimPrefix(a, "--mailbox="))
		case a == "--keep-password":
			keep = true
		default:
			return usageError("user add: unexpected %q (want LOGIN --mailbox ADDRESS...)", a)
		}
	}
	if err := model.CheckLogin(login); err != nil {
		return usageError("user add: %v", err)
	}
	var reqs []wire.Request
	now := time.Now()
	for _, addr := range mailboxes {
		if _, err := newMailboxAddress(addr); err != nil {
			return usageError("user add: --mailbox %v", err)
		}
		r, err := mailbox.SetMailbox(login, addr, true, now)
		if err != nil {
			return usageError("user add: %v", err)
		}
		reqs = append(reqs, r...)
	}
	if !keep {
		r, err := passwordRequests(c, login)
		if err != nil {
			return err
		}
		reqs = append(reqs, r...)
	}
	if len(reqs) == 0 {
		return usageError("user add: nothing to do (--keep-password without --mailbox)")
	}
	return userBatch(c, "add user "+login, reqs)
}

func userPasswd(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("user passwd: want LOGIN")
	}
	login := c.Args().First()
	if err := model.CheckLogin(login); err != nil {
		return usageError("user passwd: %v", err)
	}
	// The account must exist: a mistyped login made a new account with
	// the password (and said "ok"), while the account meant kept its old
	// one. Looked for before the password is asked.
	if err := accountExists(c, login); err != nil {
		return err
	}
	reqs, err := passwordRequests(c, login)
	if err != nil {
		return err
	}
	// Without the account's find-or-insert: should the account be gone
	// meanwhile, the set finds no row (exit ExitNotFound) rather than
	// making it again.
	reqs = slices.DeleteFunc(reqs, func(r wire.Request) bool { return r.Op == wire.OpFindOrInsert && r.Table == model.POP3 })
	return userBatch(c, "set password of "+login, reqs)
}

// accountExists returns nil if account login exists, else the error that
// says so (exit ExitNotFound).
func accountExists(c *cli.Context, login string) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	if _, err := cl.Find(ctx, model.POP3, model.AccountContent(login)); errors.Is(err, client.ErrNotFound) {
		return notFound("user passwd: no account %q (dbctl user add makes one)", strings.ToLower(login))
	} else if err != nil {
		return fmt.Errorf("find account %s: %w", login, err)
	}
	return nil
}

func userRemoveMailbox(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError("user remove-mailbox: want LOGIN ADDRESS")
	}
	reqs, err := mailbox.SetMailbox(c.Args().Get(0), c.Args().Get(1), false, time.Now())
	if err != nil {
		return usageError("user remove-mailbox: %v", err)
	}
	// Only the membership column: removing must not create the account or
	// the mailbox.
	return userBatch(c, "remove mailbox of "+c.Args().Get(0), reqs[len(reqs)-1:])
}

func userShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("user show: want LOGIN")
	}
	login := c.Args().First()
	if err := model.CheckLogin(login); err != nil {
		return usageError("user show: %v", err)
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	row, err := cl.Find(ctx, model.POP3, model.AccountContent(login))
	if errors.Is(err, client.ErrNotFound) {
		return notFound("no account %q", login)
	}
	if err != nil {
		return fmt.Errorf("find account %s: %w", login, err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "login: %s\nkey: %s\n", strings.ToLower(login), row.Key)
	if pk, ok := model.CurrentPassword(row.State); ok {
		set := time.UnixMilli(int64(row.State.Col(model.PasswordColumn(pk)))).UTC()
		fmt.Fprintf(w, "password: set %s\n", set.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "password: none (cannot log in)")
	}
	for _, mk := range model.AccountMailboxes(row.State) {
		addr := "(not here yet)"
		if mb, err := cl.FindKey(ctx, model.Mailbox, mk); err == nil {
			addr = quote(string(mb.Content)) // never raw bytes to the terminal
		}
		fmt.Fprintf(w, "mailbox: %s %s\n", addr, mk)
	}
	return nil
}

// passwordRequests reads a new password and returns the batch setting it.
func passwordRequests(c *cli.Context, login string) ([]wire.Request, error) {
	pw, err := readPassword(c, accountPassword)
	if err != nil {
		return nil, err
	}
	hash, err := passwd.Hash(pw, passwd.Default)
	if err != nil {
		return nil, err
	}
	return mailbox.SetPassword(login, hash, time.Now())
}

// passwordLimit is the longest password a command takes, and why.
type passwordLimit struct {
	max int
	why string
}

// accountPassword is the limit of an account's password: maxPasswordLen.
var accountPassword = passwordLimit{maxPasswordLen, fmt.Sprintf(
	" (the longest POP3 AUTH PLAIN can send with a %d-byte login in pop3d's 512-byte command line)", model.MaxLoginLen)}

// readPassword asks twice on a terminal; otherwise it reads stdin's first
// line (without its line end). A password longer than lim is refused.
func readPassword(c *cli.Context, lim passwordLimit) (string, error) {
	in, ok := c.App.Reader.(*os.File)
	if ok && term.IsTerminal(int(in.Fd())) {
		fmt.Fprint(c.App.ErrWriter, "new password: ")
		a, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(c.App.ErrWriter, "again: ")
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", usageError("the two passwords differ")
		}
		return checkPassword(string(a), lim)
	}
	// One byte more than lim (and its line end): a longer line is refused
	// in checkPassword, not cut to the limit and set as a password nobody
	// typed.
	line, err := bufio.NewReader(io.LimitReader(c.App.Reader, int64(lim.max)+3)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return checkPassword(strings.TrimRight(line, "\r\n"), lim)
}

// maxPasswordLen is the longest password every login path takes, in
// bytes. The smallest bound is POP3 AUTH PLAIN with an initial response:
// pop3d reads command lines of at most 512 octets, so "AUTH PLAIN " leaves
// 501 base64 characters, 375 octets decoded, of which NUL, the login (up to
// model.MaxLoginLen) and NUL take 130. POP3 PASS takes 507 bytes, IMAP
// LOGIN 4096 (its literal limit), argon2id any length. A longer password
// would be set but fail some logins with no hint why.
const maxPasswordLen = (512-len("AUTH PLAIN "))/4*3 - 2 - model.MaxLoginLen

func checkPassword(pw string, lim passwordLimit) (string, error) {
	if len(pw) < 8 {
		return "", usageError("password: at least 8 characters")
	}
	if len(pw) > lim.max {
		return "", usageError("password: at most %d bytes%s", lim.max, lim.why)
	}
	return pw, nil
}

func userBatch(c *cli.Context, what string, reqs []wire.Request) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.Batch(ctx, reqs)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, r := range res {
		if r.NotFound {
			return notFound("%s: no such account or mailbox", what)
		}
	}
	fmt.Fprintln(c.App.Writer, "ok")
	return nil
}

// notFound is a missing row the command needed: exit status ExitNotFound.
func notFound(format string, args ...any) error {
	return cli.Exit("dbctl: "+fmt.Sprintf(format, args...), ExitNotFound)
}
