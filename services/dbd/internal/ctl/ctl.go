// Package ctl implements dbctl, the operator's command line for dbd: key
// generation, the four row operations for inspection, status, dump, and a
// benchmark. Each command is a small function over a wire client; output
// goes to the writer in the cli.App so tests can read it.
package ctl

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/svc"
	"github.com/urfave/cli/v2"
)

// ExitNotFound is dbctl's exit status when the row asked for does not exist.
const ExitNotFound = 1

// App returns dbctl's command-line application.
func App() *cli.App {
	app := &cli.App{
		Name:  "dbctl",
		Usage: "operate a twinmx dbd",
		// status --site values hold a comma (NAME=HOST:PORT,PUBFILE).
		DisableSliceFlagSeparator: true,
		Flags: append(svc.DBFlags(svc.AdminEnv, "admin"),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "timeout of one command"},
		),
		Commands: []*cli.Command{
			keygenCmd(),
			clientsCmd(),
			{
				Name: "find-or-insert", Usage: "store CONTENT in TABLE unless there; prints ROWNO and new|old",
				ArgsUsage: "TABLE CONTENT", Flags: []cli.Flag{fileFlag()}, Action: findOrInsert,
			},
			{
				Name: "find", Usage: "print the row; exit status 1 if not found",
				ArgsUsage: "TABLE CONTENT|--by-key HEX", Flags: []cli.Flag{fileFlag(), keyFlag(), rawFlag()}, Action: find,
			},
			{
				Name: "set", Usage: "raise COLUMN of the row to VALUE (never lowers); prints ROWNO",
				ArgsUsage: "TABLE CONTENT|--by-key HEX COLUMN VALUE", Flags: []cli.Flag{fileFlag(), keyFlag()}, Action: set,
			},
			{
				Name: "increment", Usage: "add DELTA to this site's count of COUNTER; prints ROWNO",
				ArgsUsage: "TABLE CONTENT|--by-key HEX COUNTER DELTA", Flags: []cli.Flag{fileFlag(), keyFlag()}, Action: increment,
			},
			statusCmd(),
			{Name: "dump", Usage: "every row as one sorted line (compare sites with diff)", Action: dump},
			{
				Name: "scan", Usage: "the newest N rows of TABLE", ArgsUsage: "TABLE [N]", Action: scan,
			},
			mailboxCmd(),
			userCmd(),
			mailsCmd(),
			verdictCmd(),
			recoverAcksCmd(),
			autoverdictCmd(),
			backupCmd(),
			configCmd(),
			exportCmd(),
			importCmd(),
			benchCmd(),
		},
	}
	app.OnUsageError = flagError
	app.Action = unknownCommand
	usageExits(app.Commands)
	return app
}

// unknownCommand is the action of dbctl and of its commands that only
// group others (mailbox, user, ...): help without arguments, a usage
// error for a name that is no command. urfave/cli's own exits 3 there.
func unknownCommand(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowSubcommandHelp(c)
	}
	return usageError("no command %q (see --help)", c.Args().First())
}

// usageExits makes a flag the command line gets wrong (unknown, a bad
// value, a required one missing) exit 2 like the other usage errors, in
// every command: urfave/cli returns those as plain errors, which main
// turns into 1, the status of a failed request. It checks required
// flags before Before and returns an error of a type it does not export,
// so the commands' required flags are checked here instead.
func usageExits(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = flagError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = unknownCommand
		}
		var required []string
		for _, f := range c.Flags {
			if sf, ok := f.(*cli.StringFlag); ok && sf.Required {
				sf.Required = false
				required = append(required, sf.Name)
			}
		}
		if len(required) > 0 {
			if c.Before != nil {
				panic("dbctl: command " + c.Name + " has both required flags and a Before")
			}
			c.Before = requiredFlags(required)
		}
		usageExits(c.Subcommands)
	}
}

func flagError(_ *cli.Context, err error, _ bool) error {
	return usageError("%v (see --help)", err)
}

func requiredFlags(names []string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		var missing []string
		for _, n := range names {
			if !c.IsSet(n) {
				missing = append(missing, "--"+n)
			}
		}
		if len(missing) > 0 {
			return usageError("%s: required: %s", c.Command.Name, strings.Join(missing, ", "))
		}
		return nil
	}
}

func fileFlag() cli.Flag {
	return &cli.BoolFlag{Name: "file", Aliases: []string{"f"}, Usage: "CONTENT is the path of a file holding the content (- for stdin)"}
}
func keyFlag() cli.Flag {
	return &cli.StringFlag{Name: "by-key", Usage: "name the row by its key (64 hex digits) instead of its content"}
}
func rawFlag() cli.Flag {
	return &cli.BoolFlag{Name: "raw", Usage: "print only the content bytes"}
}

// usageError is a command-line mistake: exit status 2.
func usageError(format string, args ...any) error {
	return cli.Exit("dbctl: "+fmt.Sprintf(format, args...), 2)
}

func dial(c *cli.Context) (*client.Client, error) {
	cl, _, err := dialNoted(c)
	return cl, err
}

// dialNoted is dial that also returns the first failed connect of the
// client, for reach.
func dialNoted(c *cli.Context) (*client.Client, *firstFailure, error) {
	addr, pub, key := c.String("db"), c.String("db-pub"), c.String("key")
	if addr == "" || pub == "" || key == "" {
		return nil, nil, usageError("--db, --db-pub and --key (or TWINMX_DB, TWINMX_DB_PUB, TWINMX_KEY) are required")
	}
	kp, sp, err := wire.LoadClientKeys(key, pub)
	if err != nil {
		return nil, nil, err
	}
	ff := &firstFailure{failed: make(chan struct{})}
	cl, err := client.New(client.Config{
		Addr: addr, Static: kp, Server: sp, Timeout: c.Duration("timeout"),
		MaxBackoff:     time.Second,
		Logger:         slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelError})),
		OnConnectError: ff.note,
	})
	if err != nil {
		return nil, nil, err
	}
	return cl, ff, nil
}

// firstFailure keeps the error of a client's first failed connect. The
// client retries a request until its context ends and then reports only
// "context deadline exceeded": with dbd down (or a wrong --db-pub) a
// one-shot command would sit out the whole --timeout and say nothing
// useful. Safe for concurrent use.
type firstFailure struct {
	once   sync.Once
	failed chan struct{} // closed at the first failed connect
	err    error         // its error; read after failed is closed
}

func (f *firstFailure) note(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.failed)
	})
}

// reach pings dbd through cl and fails at the first failed connect, with
// its cause, instead of retrying until ctx ends: an operator at a prompt
// wants "connection refused" at once, not a bare timeout after 30 s.
// Commands that run long (autoverdict, which must outlast a dbd restart)
// do not call it.
func reach(ctx context.Context, cl *client.Client, notes *firstFailure, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-notes.failed:
			cancel()
		case <-stop:
		}
	}()
	err := cl.Ping(ctx)
	if err == nil {
		return nil
	}
	select {
	case <-notes.failed:
		return fmt.Errorf("connect to dbd at %s: %w", addr, notes.err)
	default:
		return fmt.Errorf("reach dbd at %s: %w", addr, err)
	}
}

func ctxOf(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, c.Duration("timeout"))
}

// connect dials dbd for a command bounded by --timeout and checks that it
// answers; done closes the connection and ends the context.
func connect(c *cli.Context) (ctx context.Context, cl *client.Client, done func(), err error) {
	cl, notes, err := dialNoted(c)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := ctxOf(c)
	if err := reach(ctx, cl, notes, c.String("db")); err != nil {
		cancel()
		cl.Close()
		return nil, nil, nil, err
	}
	return ctx, cl, func() { cancel(); cl.Close() }, nil
}

// rowArgs parses "TABLE CONTENT|--by-key HEX" and returns the table, the
// reference, and the remaining arguments.
func rowArgs(c *cli.Context) (model.Table, wire.Ref, []string, error) {
	args := c.Args().Slice()
	if len(args) < 1 {
		return 0, wire.Ref{}, nil, usageError("%s: missing TABLE", c.Command.Name)
	}
	t, err := model.ParseTable(args[0])
	if err != nil {
		return 0, wire.Ref{}, nil, usageError("%v", err)
	}
	args = args[1:]
	if k := c.String("by-key"); k != "" && c.Command.Name != "find-or-insert" {
		key, err := model.ParseKey(k)
		if err != nil {
			return 0, wire.Ref{}, nil, usageError("%v", err)
		}
		return t, wire.Ref{ByKey: true, Key: key}, args, nil
	}
	if len(args) < 1 {
		return 0, wire.Ref{}, nil, usageError("%s: missing CONTENT", c.Command.Name)
	}
	content := []byte(args[0])
	if c.Bool("file") {
		content, err = readContent(c, args[0])
		if err != nil {
			return 0, wire.Ref{}, nil, err
		}
	}
	return t, wire.Ref{Content: content}, args[1:], nil
}

func readContent(c *cli.Context, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(c.App.Reader)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read content: %w", err)
	}
	return b, nil
}

// rowCall is what every row command starts with: its parsed arguments
// and a connected client. Callers must call close.
type rowCall struct {
	t    model.Table
	ref  wire.Ref
	rest []string
	cl   *client.Client
	ctx  context.Context
	done func()
}

// openRowCall parses "TABLE CONTENT|--by-key HEX" plus exactly nrest more
// arguments (usage says which) and connects.
func openRowCall(c *cli.Context, nrest int, usage string) (*rowCall, error) {
	t, ref, rest, err := rowArgs(c)
	if err != nil {
		return nil, err
	}
	if len(rest) != nrest {
		return nil, usageError("%s: want %s", c.Command.Name, usage)
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return nil, err
	}
	return &rowCall{t: t, ref: ref, rest: rest, cl: cl, ctx: ctx, done: done}, nil
}

func (r *rowCall) close() { r.done() }

func findOrInsert(c *cli.Context) error {
	r, err := openRowCall(c, 0, "TABLE CONTENT")
	if err != nil {
		return err
	}
	defer r.close()
	no, isNew, err := r.cl.FindOrInsert(r.ctx, r.t, r.ref.Content)
	if err != nil {
		return err
	}
	state := "old"
	if isNew {
		state = "new"
	}
	fmt.Fprintf(c.App.Writer, "%d %s\n", no, state)
	return nil
}

func find(c *cli.Context) error {
	r, err := openRowCall(c, 0, "TABLE CONTENT or --by-key HEX TABLE")
	if err != nil {
		return err
	}
	defer r.close()
	var row *wire.Row
	if r.ref.ByKey {
		row, err = r.cl.FindKey(r.ctx, r.t, r.ref.Key)
	} else {
		row, err = r.cl.Find(r.ctx, r.t, r.ref.Content)
	}
	if errors.Is(err, client.ErrNotFound) {
		return cli.Exit("not found", ExitNotFound)
	}
	if err != nil {
		return err
	}
	if c.Bool("raw") {
		_, err := c.App.Writer.Write(row.Content)
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "table: %s\nkey: %s\nrowno: %d\nsize: %d\n", row.Table, row.Key, row.RowNo, row.Size)
	fmt.Fprintf(w, "columns: %s\ncounters: %s\n", formatCols(row.State), formatCounters(row.State))
	if len(row.Content) <= 4096 {
		fmt.Fprintf(w, "content: %s\n", strconv.Quote(string(row.Content)))
	} else {
		fmt.Fprintf(w, "content: (%d bytes; --raw prints them)\n", len(row.Content))
	}
	return nil
}

func set(c *cli.Context) error       { return update(c, wire.OpSet) }
func increment(c *cli.Context) error { return update(c, wire.OpIncrement) }

func update(c *cli.Context, op wire.Op) error {
	r, err := openRowCall(c, 2, "TABLE CONTENT NAME VALUE")
	if err != nil {
		return err
	}
	defer r.close()
	name := r.rest[0]
	if err := model.CheckName(name); err != nil {
		return usageError("%v (see --help)", err)
	}
	v, err := strconv.ParseUint(r.rest[1], 10, 64)
	if err != nil {
		return usageError("%s: VALUE must be an unsigned integer: %v", c.Command.Name, err)
	}
	var no uint64
	if op == wire.OpSet {
		no, err = r.cl.Set(r.ctx, r.t, r.ref, name, v)
	} else {
		no, err = r.cl.Increment(r.ctx, r.t, r.ref, name, v)
	}
	if errors.Is(err, client.ErrNotFound) {
		return cli.Exit("not found", ExitNotFound)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, no)
	return nil
}

func status(c *cli.Context) error {
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	figs, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "db: %s\n", c.String("db"))
	for _, f := range figs {
		fmt.Fprintf(w, "%s: %s\n", f.Name, f.Value)
	}
	// The queues need a key that may scan receive rows, and a store that
	// serves reads: without them status still shows dbd's own figures.
	q, err := scanReceive(ctx, cl)
	if err != nil {
		fmt.Fprintf(w, "mails: unknown (%v)\n", err)
		return nil
	}
	fmt.Fprintf(w, "mails.scanned: %d\nmails.undecided: %d\nmails.not-backed-up: %d\n", q.scanned, q.undecided, q.unmarked)
	return nil
}

// DumpLine formats one row of a dump: table, key, content digest, size,
// columns and counters, without the site-local row number, so equal rows
// give equal lines on every site.
func DumpLine(r *wire.Row) string {
	return fmt.Sprintf("%s %s sha256:%x size=%d cols=%s counters=%s",
		r.Table, r.Key, r.Digest, r.Size, formatCols(r.State), formatCounters(r.State))
}

func dump(c *cli.Context) error {
	cl, notes, err := dialNoted(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := ctxOf(c)
	err = reach(ctx, cl, notes, c.String("db"))
	cancel()
	if err != nil {
		return err
	}
	// A dump may be long: it is bounded by --timeout per row, not overall.
	st, err := cl.Dump(c.Context)
	if err != nil {
		return err
	}
	defer st.Close()
	for {
		ctx, cancel := ctxOf(c)
		row, err := st.Next(ctx)
		cancel()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(c.App.Writer, DumpLine(row)); err != nil {
			return err
		}
	}
}

func scan(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 1 || len(args) > 2 {
		return usageError("scan: want TABLE [N]")
	}
	t, err := model.ParseTable(args[0])
	if err != nil {
		return usageError("%v (see --help)", err)
	}
	n := 20
	if len(args) == 2 {
		// More than dbd's 10000 rows a scan answers were cut to them
		// unsaid: it pages now (scanNewest), up to maxRowCount.
		if n, err = strconv.Atoi(args[1]); err != nil || n < 0 || n > maxRowCount {
			return usageError("scan: N must be an integer from 0 to %d", maxRowCount)
		}
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	return scanNewest(ctx, cl, t, n, func(row *wire.Row) error {
		_, err := fmt.Fprintf(c.App.Writer, "%d %s %s size=%d cols=%s counters=%s\n", row.RowNo, row.Table, row.Key, row.Size,
			formatCols(row.State), formatCounters(row.State))
		return err
	})
}

func formatCols(s model.State) string {
	names := make([]string, 0, len(s.Cols))
	for n := range s.Cols {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, s.Cols[n])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func formatCounters(s model.State) string {
	names := make([]string, 0, len(s.Counters))
	for n := range s.Counters {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		sites := make([]string, 0, len(s.Counters[n]))
		for site := range s.Counters[n] {
			sites = append(sites, site)
		}
		sort.Strings(sites)
		per := make([]string, len(sites))
		for i, site := range sites {
			per[i] = fmt.Sprintf("%s:%d", site, s.Counters[n][site])
		}
		parts = append(parts, fmt.Sprintf("%s=%d(%s)", n, s.Counter(n), strings.Join(per, "+")))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func keygenCmd() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "make a key pair: --out DIR/NAME writes DIR/NAME (secret, 0600) and DIR/NAME.pub",
		Flags: []cli.Flag{&cli.StringFlag{Name: "out", Required: true, Usage: "path of the secret key file"}},
		Action: func(c *cli.Context) error {
			kp, err := wire.GenerateKeyPair(rand.Reader)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(c.String("out")), 0o700); err != nil {
				return fmt.Errorf("make key folder: %w", err)
			}
			if err := wire.WriteKeyFiles(c.String("out"), kp); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s\n", kp.Public)
			return nil
		},
	}
}
