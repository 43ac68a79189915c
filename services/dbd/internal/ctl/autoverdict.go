package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
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
		err := followReceives(c.Context, cl, v, func(n int) {
			fmt.Fprintf(c.App.Writer, "decided %d\n", n)
		}, func() {
			fmt.Fprintf(c.App.ErrWriter, "dbctl: autoverdict: only the newest %d receive rows were looked at (the most dbd answers a scan with): "+
				"older rows without a verdict, if any, stay undecided\n", backlogScan)
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
// when it (re)subscribes: rows stored while it was away. It asked for
// 100000, but dbd answers a scan with at most maxScan rows, and a scan has
// no cursor to page on with (a list pages through one mailbox's rows
// only), so older rows were skipped without a word. They still are, but
// the operator is told.
const backlogScan = maxScan

// followReceives decides receive rows until ctx ends or dbd fails:
// progress gets the size of each batch decided, truncated is called once
// when the scan of existing rows stops at backlogScan (older ones may be
// left undecided).
func followReceives(ctx context.Context, cl *client.Client, v model.Verdict, progress func(int), truncated func()) error {
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
		sc, err := cl.Scan(ctx, model.Receive, backlogScan)
		if err != nil {
			cancel(fmt.Errorf("scan receive rows: %w", err))
			return
		}
		defer sc.Close()
		for n := 1; ; n++ {
			row, err := sc.Next(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				cancel(fmt.Errorf("scan receive rows: %w", err))
				return
			}
			// Told on the last row the scan may give, before it is
			// decided, so the warning comes before the scan's last
			// progress, not after.
			if n == backlogScan {
				truncated()
			}
			if row.State.Cols[model.ColVerdict] == 0 {
				send(row.Key)
			}
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
