package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/urfave/cli/v2"
)

// maxScan is the most rows dbd answers one scan with (its server's
// maxScan): a larger limit is cut to it without a word. status reads one
// such scan (receiveScan, and says so); the commands that take a row
// count page (scanNewest).
const maxScan = 10000

// maxRowCount bounds the row counts the commands take (mails --last,
// verdict --scan, recover-acks --scan, scan N): as maxTableRows, far more
// than a site keeps, and minutes to read.
const maxRowCount = maxTableRows

// receiveScan is how many of the newest receive rows status reads to count
// mails undecided and not yet backed up.
const receiveScan = maxScan

// checkScan refuses a row count outside 1..maxRowCount (0 too with
// zeroOK) as a usage error naming flag.
func checkScan(cmd, flag string, n int, zeroOK bool) error {
	if n < 0 || (n == 0 && !zeroOK) || n > maxRowCount {
		low := 1
		if zeroOK {
			low = 0
		}
		return usageError("%s: %s %d: want %d to %d", cmd, flag, n, low, maxRowCount)
	}
	return nil
}

// scanNewest calls fn with the newest n rows of table t, newest first,
// without content, paging past dbd's maxScan rows a scan (client.ScanAll).
// The commands that take a row count asked for one scan, which dbd cut to
// 10000 rows, so they refused more. Against a dbd too old to page a scan,
// more than maxScan rows of a larger table is an error wrapping
// client.ErrScanTooOld (after fn had the newest maxScan).
func scanNewest(ctx context.Context, cl *client.Client, t model.Table, n int, fn func(*wire.Row) error) error {
	if n <= 0 {
		return nil
	}
	seen := 0
	err := cl.ScanAll(ctx, t, n, func(r *wire.Row) error {
		seen++
		return fn(r)
	})
	switch {
	case errors.Is(err, client.ErrScanBound):
		return nil // the table has more than the n asked for
	case errors.Is(err, client.ErrScanTooOld) && seen >= n:
		return nil // it refused only the look past the nth row
	}
	return err
}

func statusCmd() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show dbd's figures and its queues (mails without a verdict, and not yet backed up, among the newest 10000 receive rows); with --site (as given to backupd), every site, the replication lag per direction and those queues",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "site", Usage: "NAME=HOST:PORT,PUBFILE of one site, as for backupd (repeat); --key must be an admin key at every site"},
		},
		Action: func(c *cli.Context) error {
			if len(c.StringSlice("site")) > 0 {
				return peerStatus(c)
			}
			return status(c)
		},
	}
}

// peerSite is one site of `dbctl status --site`.
type peerSite struct {
	name, addr string
	cl         *client.Client
	notes      *firstFailure
	stamps     wire.Stamps
	err        error
}

// replCursor is the name of backupd's cursor for the pump from src to dst,
// kept in dst. It must match backupd (services/backupd/internal/replica).
func replCursor(src, dst string) string {
	return "repl." + strings.ToLower(src) + "-to-" + strings.ToLower(dst)
}

func peerStatus(c *cli.Context) error {
	kp, err := wire.LoadKeyPair(c.String("key"))
	if err != nil {
		return usageError("--key: %v", err)
	}
	var sites []*peerSite
	for _, v := range c.StringSlice("site") {
		name, rest, ok := strings.Cut(v, "=")
		addr, pubFile, ok2 := strings.Cut(rest, ",")
		if !ok || !ok2 || name == "" {
			return usageError("--site %q: want NAME=HOST:PORT,PUBFILE", v)
		}
		pub, err := wire.LoadPublicKey(pubFile)
		if err != nil {
			return usageError("--site %s: %v", name, err)
		}
		notes := &firstFailure{failed: make(chan struct{})}
		cl, err := client.New(client.Config{Addr: addr, Static: kp, Server: pub, Timeout: c.Duration("timeout"),
			DialTimeout: 3 * time.Second, MaxBackoff: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			OnConnectError: notes.note})
		if err != nil {
			return err
		}
		defer cl.Close()
		sites = append(sites, &peerSite{name: name, addr: addr, cl: cl, notes: notes})
	}
	w := c.App.Writer
	for _, s := range sites {
		ctx, cancel := ctxOf(c)
		line, err := siteLine(ctx, s)
		cancel()
		if err != nil {
			s.err = err
			fmt.Fprintf(w, "site %s (%s): unreachable: %v\n", s.name, s.addr, err)
			continue
		}
		fmt.Fprintf(w, "site %s (%s): %s\n", s.name, s.addr, line)
	}
	for _, src := range sites {
		for _, dst := range sites {
			if src == dst {
				continue
			}
			if dst.err != nil {
				fmt.Fprintf(w, "%s -> %s: unknown (%s unreachable)\n", src.name, dst.name, dst.name)
				continue
			}
			ctx, cancel := ctxOf(c)
			cur, err := dst.cl.Cursor(ctx, replCursor(src.name, dst.name))
			cancel()
			switch {
			case err != nil:
				fmt.Fprintf(w, "%s -> %s: cursor unreadable: %v\n", src.name, dst.name, err)
			case src.err != nil:
				fmt.Fprintf(w, "%s -> %s: cursor %d, lag unknown (%s unreachable)\n", src.name, dst.name, cur, src.name)
			default:
				fmt.Fprintf(w, "%s -> %s: cursor %d, lag %d changes\n", src.name, dst.name, cur, src.stamps.Behind(cur))
			}
		}
	}
	return nil
}

// siteLine reads one site's stamp, row count and not-yet-backed-up mails.
func siteLine(ctx context.Context, s *peerSite) (string, error) {
	// A site that is down is reported at its first failed connect, not
	// after --timeout of retries (one such wait per site).
	if err := reach(ctx, s.cl, s.notes, s.addr); err != nil {
		return "", err
	}
	figs, err := s.cl.Status(ctx)
	if err != nil {
		return "", err
	}
	if s.stamps, err = wire.StampsOf(figs); err != nil {
		return "", err
	}
	var rows uint64
	for _, f := range figs {
		if strings.HasPrefix(f.Name, "rows.") {
			v, _ := strconv.ParseUint(f.Value, 10, 64)
			rows += v
		}
	}
	q, err := scanReceive(ctx, s.cl)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("stamp %d, %d rows, %d mails undecided, %d not backed up (of the newest %d receive rows)",
		s.stamps.Last, rows, q.undecided, q.unmarked, q.scanned), nil
}

// receiveQueue is what the newest receive rows of a site say about the
// mails still waiting: for a verdict (spamd's queue; smtpd answers 451
// while it lasts) or for the backed-up mark (strict mode's queue).
type receiveQueue struct {
	scanned, undecided, unmarked int
}

// scanReceive reads the newest receiveScan receive rows.
func scanReceive(ctx context.Context, cl *client.Client) (receiveQueue, error) {
	var q receiveQueue
	st, err := cl.Scan(ctx, model.Receive, receiveScan)
	if err != nil {
		return q, err
	}
	defer st.Close()
	for {
		r, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			return q, nil
		}
		if err != nil {
			return receiveQueue{}, err
		}
		q.scanned++
		if r.State.Col(model.ColVerdict) == 0 {
			q.undecided++
		}
		if r.State.Col(model.ColBackedUp) < model.FlagSet {
			q.unmarked++
		}
	}
}
