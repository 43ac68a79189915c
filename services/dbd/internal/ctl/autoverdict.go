package ctl

import (
	"context"
	"errors"
	"fmt"
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
		})
		if c.Context.Err() != nil {
			break
		}
		fmt.Fprintf(c.App.ErrWriter, "dbctl: autoverdict: %v; resubscribing\n", err)
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func followReceives(ctx context.Context, cl *client.Client, v model.Verdict, progress func(int)) error {
	st, err := cl.Watch(ctx, model.Receive, nil, true)
	if err != nil {
		return err
	}
	defer st.Close()
	rows := make(chan model.Key, 4096)
	errc := make(chan error, 1)
	go func() {
		defer close(rows)
		for {
			row, err := st.Next(ctx)
			if err != nil {
				errc <- err
				return
			}
			if row.State.Cols[model.ColVerdict] == 0 {
				rows <- row.Key
			}
		}
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
			return fmt.Errorf("set %d verdicts: %w", len(reqs), err)
		}
		progress(len(keys))
	}
	err = <-errc
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
