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

// recover-acks closes the one window strict mode leaves (docs/smtpd.md
// §2): smtpd answers 250 once the mail is on both sites and its receive
// rows are acknowledged at its own site; the acknowledgement reaches the
// other site through backupd a few milliseconds later. A site destroyed
// inside that window leaves the other with the mail but without the ack,
// so the mail is in no mailbox there although its sender was told 250 and
// will not send it again.

func recoverAcksCmd() *cli.Command {
	return &cli.Command{
		Name:  "recover-acks",
		Usage: "after the loss of a site: put into their mailboxes the accepted mails whose acknowledgement was lost with it",
		Description: "Run it against the surviving site's dbd once the other site is known to be gone for good (not merely\n" +
			"cut off: then its acknowledgements still arrive). It lists the receive rows of the newest --scan that have an\n" +
			"accept verdict, no ack and a delivery attempt within --since; with --apply it acknowledges them, linked to\n" +
			"the Received fields of their newest attempt, as smtpd would have. Some of them may have got 451 instead of\n" +
			"250: their senders' retries find the acknowledged rows and get 250, so nothing arrives twice. Mails without\n" +
			"a verdict yet are counted: run it again once spamd has judged them.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "scan", Value: maxScan, Usage: "newest receive rows and throw-ins to look at (1 to 1000000)"},
			&cli.DurationFlag{Name: "since", Value: 24 * time.Hour, Usage: "only mails with a delivery attempt this recent"},
			&cli.BoolFlag{Name: "apply", Usage: "acknowledge them (without it, only list them)"},
		},
		Action: recoverAcks,
	}
}

// orphan is an accepted, unacknowledged receive row and its newest
// delivery attempt.
type orphan struct {
	receive, mail model.Key
	attempt       model.Attempt
}

func recoverAcks(c *cli.Context) error {
	// The default was 20000, which dbd cut to 10000 rows unsaid: after a
	// site loss, orphans beyond them were missed while the operator
	// believed twice as many rows were looked at.
	if err := checkScan("recover-acks", "--scan", c.Int("scan"), false); err != nil {
		return err
	}
	if c.Duration("since") <= 0 {
		return usageError("recover-acks: --since must be positive")
	}
	ctx, cl, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	attempts, err := newestAttempts(ctx, cl, c.Int("scan"), time.Now().Add(-c.Duration("since")))
	if err != nil {
		return err
	}
	var found []orphan
	undecided := 0
	err = eachNewest(ctx, cl, c.Int("scan"), func(r receiveInfo) error {
		a, ok := attempts[r.mail]
		if !ok || r.state.Cols[model.ColAcknowledged] == model.FlagSet || r.state.Cols[model.ColDeleted] == model.FlagSet {
			return nil
		}
		_, _, v, decided := model.DecodeVerdict(r.state.Cols[model.ColVerdict])
		switch {
		case !decided:
			undecided++
		case v == model.Accept:
			found = append(found, orphan{receive: r.key, mail: r.mail, attempt: a})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range found {
		rcvd := "none"
		if o.attempt.HasReceived {
			rcvd = o.attempt.Received.String()
		}
		fmt.Fprintf(c.App.Writer, "%s mail=%s attempt=%s client=%s received=%s\n", o.receive, o.mail,
			o.attempt.Time.UTC().Format(time.RFC3339), o.attempt.ClientIP(), rcvd)
	}
	acked := 0
	if c.Bool("apply") {
		if acked, err = acknowledgeOrphans(ctx, cl, found); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.App.Writer, "recover-acks: %d accepted without ack, %d acknowledged now, %d with an attempt but no verdict yet\n",
		len(found), acked, undecided)
	return nil
}

// newestAttempts reads the newest n throw-ins and returns, per mail, the
// newest delivery attempt not before since.
func newestAttempts(ctx context.Context, cl *client.Client, n int, since time.Time) (map[model.Key]model.Attempt, error) {
	out := map[model.Key]model.Attempt{}
	err := scanNewest(ctx, cl, model.ThrowIn, n, func(r *wire.Row) error {
		k := r.Key
		row, err := cl.FindKey(ctx, model.ThrowIn, k)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read throw-in %s: %w", k, err)
		}
		a, err := model.ParseThrowIn(row.Content)
		if err != nil || !a.HasMail || a.Time.Before(since) {
			return nil // not a mail's attempt (or not ours to judge)
		}
		if old, ok := out[a.Mail]; !ok || a.Time.After(old.Time) {
			out[a.Mail] = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan throw-ins: %w", err)
	}
	return out, nil
}

// acknowledgeOrphans sets ack and the received link on each row, in
// batches, as smtpd's acknowledgement does (deliver.Acknowledge).
func acknowledgeOrphans(ctx context.Context, cl *client.Client, rows []orphan) (int, error) {
	const batch = 100
	acked := 0
	for start := 0; start < len(rows); start += batch {
		var reqs []wire.Request
		for _, o := range rows[start:min(start+batch, len(rows))] {
			ref := wire.Ref{ByKey: true, Key: o.receive}
			reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet})
			if o.attempt.HasReceived {
				ms := uint64(max(o.attempt.Time.UnixMilli(), 1))
				reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(o.attempt.Received), Value: ms})
			}
		}
		res, err := cl.Batch(ctx, reqs)
		if err != nil {
			return acked, fmt.Errorf("acknowledge receive rows: %w", err)
		}
		for i, r := range res {
			if reqs[i].Name == model.ColAcknowledged && !r.NotFound {
				acked++
			}
		}
	}
	return acked, nil
}
