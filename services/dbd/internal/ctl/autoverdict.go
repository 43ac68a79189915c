package ctl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

func autoverdictCmd() *cli.Command {
	return &cli.Command{
		Name:      "autoverdict",
		Usage:     "until interrupted, give every receive row without a verdict the filter verdict accept (or reject): a stand-in spam filter for trials and benchmarks",
		ArgsUsage: "accept|reject",
		Action:    autoverdict,
	}
}

// autoverdict follows the receive table on dbd's watch stream and decides
// every undecided row, batching the sets so it keeps up with smtpd.
func autoverdict(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("autoverdict: want accept|reject")
	}
	v, err := model.ParseVerdict(c.Args().First())
	if err != nil || v == model.Retry {
		return usageError("autoverdict: want accept|reject")
	}
	cl, err := dial(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	for c.Context.Err() == nil {
		err := followReceives(c.Context, cl, v, backlogScan, func(n int) {
			fmt.Fprintf(c.App.Writer, "decided %d\n", n)
		}, func(why string) {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: autoverdict: %s: older rows without a verdict, if any, stay undecided\n", why)
		})
		if c.Context.Err() != nil {
			break
		}
		fmt.Fprintf(c.App.ErrWriter, "dbctl: autoverdict: %v; resubscribing\n", err)
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// backlogScan bounds how many existing receive rows autoverdict looks at
// when it (re)subscribes: rows stored while it was away. A single scan
// gave at most the newest 10000 and older undecided rows were skipped;
// the scan now pages (client.ScanAll) down to the oldest row or this
// bound, some 100 pages of rows without content, and the operator is
// told if it is reached.
const backlogScan = 1000000

// followReceives decides receive rows until ctx ends or dbd fails:
// progress gets the size of each batch decided, truncated is called once,
// with why, when the scan of existing rows stops before the oldest (at
// backlog rows, or at the newest 10000 of a dbd too old to page a scan);
// older ones may be left undecided.
func followReceives(ctx context.Context, cl *client.Client, v model.Verdict, backlog int, progress func(int), truncated func(why string)) error {
	// Subscribe first, then scan what exists: a row stored in between is
	// seen twice at worst (a second, harmless set), never missed. A watch
	// of a whole table sends no existing rows, hence the scan.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Only rows without a verdict: the verdicts it sets itself and the
	// acknowledgements after them were two of every three events.
	st, err := cl.WatchWhere(ctx, model.Receive, wire.WatchCond{Without: model.ColVerdict})
	if err != nil {
		return err
	}
	defer st.Close()
	rows := make(chan model.Key, 4096)
	send := func(k model.Key) {
		select {
		case rows <- k:
		case <-ctx.Done():
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	// The scan and the watch are read at once: an unread stream would
	// stall the connection's other stream.
	go func() {
		defer wg.Done()
		// Each page is read whole before its rows are handed on, so a
		// full queue holds up no stream.
		err := cl.ScanAll(ctx, model.Receive, backlog, func(row *wire.Row) error {
			if row.State.Cols[model.ColVerdict] == 0 {
				send(row.Key)
			}
			return ctx.Err()
		})
		switch {
		case errors.Is(err, client.ErrScanBound):
			truncated(fmt.Sprintf("only the newest %d receive rows were looked at", backlog))
		case errors.Is(err, client.ErrScanTooOld):
			// As before scans could page: the newest rows are
			// decided, and the watch goes on.
			truncated(fmt.Sprintf("only the newest 10000 receive rows were looked at (%v)", client.ErrScanTooOld))
		case err != nil:
			cancel(fmt.Errorf("scan receive rows: %w", err))
		}
	}()
	go func() {
		defer wg.Done()
		for {
			row, err := st.Next(ctx)
			if err != nil {
				cancel(fmt.Errorf("watch receive rows: %w", err))
				return
			}
			if row.State.Cols[model.ColVerdict] == 0 {
				send(row.Key)
			}
		}
	}()
	go func() {
		wg.Wait()
		close(rows)
	}()
	for k := range rows {
		val := model.EncodeVerdict(model.SourceFilter, model.Epoch(time.Now()), v)
		keys := []model.Key{k}
	drain:
		for len(keys) < wire.MaxBatchOps {
			select {
			case k2, ok := <-rows:
				if !ok {
					break drain
				}
				keys = append(keys, k2)
			default:
				break drain
			}
		}
		reqs := make([]wire.Request, len(keys))
		for i, k := range keys {
			reqs[i] = wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: model.ColVerdict, Value: val}
		}
		if _, err := cl.Batch(ctx, reqs); err != nil {
			cancel(fmt.Errorf("set %d verdicts: %w", len(reqs), err))
			break
		}
		progress(len(keys))
	}
	cancel(nil)
	for range rows { // let the readers finish
	}
	err = context.Cause(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
