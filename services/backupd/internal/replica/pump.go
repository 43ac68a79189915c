package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// pump copies every change of one source site into one destination site.
//
// A session opens a changes stream (follow) on the source from the cursor
// stored in the destination, and merges the streamed rows in batches; each
// merge raises the cursor in the same atomic transaction as its rows. So
// whatever crashes when (backupd, either dbd, the link), the next session
// resumes from a cursor that names exactly what the destination holds: no
// change is skipped. A change may be merged twice (the cursor is held below
// receive rows whose mark is not settled, see tracker), and a second merge
// of the same row changes nothing: merges take maxima.
//
// Within a session three goroutines run: the reader (stream -> queue), the
// heartbeat (both dbds answer? source's latest stamp) and the merger (queue
// -> merge, in the session's own goroutine). Merges are strictly
// sequential: a later merge must never commit its higher cursor before an
// earlier merge's rows.
type pump struct {
	cfg      *Config
	log      *slog.Logger
	m        *metrics
	src, dst Site
	cursor   string
	tr       *tracker
	lag      lagTracker
	mk       *marker
	known    presence // rows this session merged (merge loop only)
	link     linkState
}

// sessionError tags an error with the stage it happened in (a metric label).
type sessionError struct {
	stage string
	err   error
}

func (e *sessionError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

// errRestream ends a session whose receive rows the marker could not take
// and now can: the next session streams them again (tracker.restream).
var errRestream = errors.New("replica: the marker has room again: stream again from the stored cursor")

func staged(stage string, err error) error {
	if err == nil {
		return nil
	}
	var se *sessionError
	if errors.As(err, &se) {
		return err
	}
	return &sessionError{stage, err}
}

// run runs sessions until ctx ends, waiting with backoff between them.
//
// The wait doubles from MinBackoff to MaxBackoff while sessions end
// without merging anything, with jitter (half to all of it): when a site
// goes away, every pump to and from it fails at once, and without jitter
// they redialled it in step, for as long as it was down. It logs a change
// of state only (the link went down, failed at another stage, came back):
// a peer down for hours used to write a warning per retry, every 5 s.
//
// A session ended by errRestream is no failure: the next one starts at
// once and is not counted as a reconnect.
func (p *pump) run(ctx context.Context) {
	back := p.cfg.MinBackoff
	reconnect := false
	for {
		if reconnect {
			p.m.reconnects.WithLabelValues(p.src.Name, p.dst.Name).Inc()
		}
		reconnect = true
		progressed, err := p.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRestream) {
			p.log.Info("marker has room again for receive rows it could not take: streaming again from the stored cursor")
			back = p.cfg.MinBackoff
			reconnect = false
			continue
		}
		stage := stageStream
		var se *sessionError
		if errors.As(err, &se) {
			stage = se.stage
		}
		p.m.errors.WithLabelValues(p.src.Name, p.dst.Name, stage).Inc()
		if progressed {
			back = p.cfg.MinBackoff
		}
		wait := jitter(back)
		if p.link.failed(stage, time.Now()) {
			p.log.Warn("replication session ended; reconnecting (further failures at this stage are logged at debug level)",
				"stage", stage, "err", err, "retry_in", wait)
		} else {
			p.log.Debug("replication session ended; reconnecting", "stage", stage, "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		back = min(2*back, p.cfg.MaxBackoff)
	}
}

// jitter returns a random wait from half of d to d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// linkState is what a pump last logged about its link, so that it logs
// changes only. Only the pump's run goroutine uses it.
type linkState struct {
	stage string    // the stage of the failures since the last session start ("": none)
	fails int       // sessions failed since then
	since time.Time // the first of them
}

// failed records a failed session and reports whether that is news: the
// first failure since a session started, or one at another stage.
func (l *linkState) failed(stage string, now time.Time) bool {
	l.fails++
	if l.stage == stage {
		return false
	}
	if l.stage == "" {
		l.since = now
	}
	l.stage = stage
	return true
}

// started records a session that started, and returns the failures
// before it and since when (0: the link was not down).
func (l *linkState) started() (fails int, since time.Time) {
	fails, since = l.fails, l.since
	*l = linkState{}
	return fails, since
}

// newClient makes a client for one session. It keeps to one connection
// (client.Config.OneConnection): the cursor a session read from dst is
// true only of that dbd run. Had dst come back with an older copy of its
// store, or an empty one, a merge sent on a new connection would raise
// the cursor past what that copy lacks, and those rows would never be
// sent again. A lost connection ends the session instead, and the next
// one reads the cursor anew.
func (p *pump) newClient(s Site, streamBuffer int) (*client.Client, error) {
	return client.New(client.Config{
		Addr: s.Addr, Static: p.cfg.Key, Server: s.Server,
		Timeout: p.cfg.RequestTimeout, DialTimeout: p.cfg.HeartbeatTimeout,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
		StreamBuffer: streamBuffer, Logger: quiet(p.log), OneConnection: true,
	})
}

// session runs one stream-and-merge session until an error. Clients are
// made per session and closed at its end: a stalled connection never fails
// by itself, and closing the client is the only way to drop it.
func (p *pump) session(ctx context.Context) (progressed bool, err error) {
	// A small stream buffer: rows the client holds unread are not counted
	// in MaxQueuedBytes, so keep few of them (TCP back-pressure does the rest).
	src, err := p.newClient(p.src, 4)
	if err != nil {
		return false, staged(stageConnect, err)
	}
	defer src.Close()
	dst, err := p.newClient(p.dst, 0)
	if err != nil {
		return false, staged(stageConnect, err)
	}
	defer dst.Close()
	// The heartbeat pings dst on a connection of its own: on dst's
	// connection a ping waits behind the merge under way, which over a
	// slow link takes longer than HeartbeatTimeout without anything being
	// wrong. A stalled link stalls this connection too.
	live, err := p.newClient(p.dst, 0)
	if err != nil {
		return false, staged(stageConnect, err)
	}
	defer live.Close()
	// The rows dst lacks are read from src on a connection of their own
	// (dialled only then): the stream's connection is not read while the
	// queue is full, so an answer on it would wait behind the stream for
	// good (see merge).
	srcRows, err := p.newClient(p.src, 0)
	if err != nil {
		return false, staged(stageConnect, err)
	}
	defer srcRows.Close()

	// The source's last stamp first: while the destination cannot be
	// reached, every session ends at its cursor below, and the lag would
	// not count the changes the source takes meanwhile (the rows figure
	// stood still while the link to a dead site was down).
	cctx, cancel := context.WithTimeout(ctx, p.cfg.HeartbeatTimeout)
	if figs, err := src.Status(cctx); err == nil {
		if st, err := wire.StampsOf(figs); err == nil {
			p.lag.status(st, time.Now())
		}
	}
	cancel()
	cctx, cancel = context.WithTimeout(ctx, p.cfg.HeartbeatTimeout)
	cur, err := dst.Cursor(cctx, p.cursor)
	cancel()
	if err != nil {
		return false, staged(stageConnect, fmt.Errorf("read cursor %s at %s: %w", p.cursor, p.dst.Name, err))
	}
	p.tr.reset(cur)
	p.known.reset()
	p.lag.start(cur, time.Now())
	from, err := p.streamFrom(ctx, src, cur)
	if err != nil {
		return false, staged(stageConnect, err)
	}

	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// Rows whose state came from dst exactly as dst sent it come without
	// content: dst has them. Only their stamps and states travel back.
	st, err := src.Changes(sctx, from, true, CursorName(p.dst.Name, p.src.Name))
	if err != nil {
		return false, staged(stageConnect, fmt.Errorf("open changes stream at %s from %d: %w", p.src.Name, from, err))
	}
	defer st.Close()
	if fails, since := p.link.started(); fails > 0 {
		p.log.Info("replication session started again", "cursor", cur, "failed_sessions", fails, "down_for", time.Since(since).Round(time.Millisecond))
	} else {
		p.log.Info("replication session started", "cursor", cur)
	}

	q := newQueue(p.cfg.MaxQueuedBytes)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop(nil) // runs before wg.Wait: stops the helpers
	wg.Add(2)
	go func() {
		defer wg.Done()
		stop(p.read(sctx, st, q))
	}()
	go func() {
		defer wg.Done()
		stop(p.heartbeat(sctx, src, live, q))
	}()
	progressed, err = p.mergeLoop(sctx, srcRows, dst, q, cur)
	if sctx.Err() != nil {
		// The reader or the heartbeat ended the session: their error
		// says why, not the merge it cancelled.
		err = context.Cause(sctx)
	}
	return progressed, err
}

// streamFrom returns the stamp to stream src's changes from: the cursor
// cur, unless cur lies above every stamp src has (so it was given by a
// lost copy of src's store: src came back from an older copy) and src's
// current run hands out stamps at or below it. A run's stamps start above
// the time src opened its store (wire.Stamps), and so above every stamp a
// lost copy gave, as long as src's clock is not behind the one that copy
// had; a restored copy or VM snapshot that starts with its clock set back
// breaks that, and its changes up to cur would be skipped. They are then
// streamed from where the run's stamps start; the changes streamed twice
// are merged as no-ops. (A dbd without the stamp floor reports its last
// stamp as the floor: the same rule covers one that came back with an
// older copy of its store.)
func (p *pump) streamFrom(ctx context.Context, src *client.Client, cur uint64) (uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, p.cfg.HeartbeatTimeout)
	figs, err := src.Status(sctx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", p.src.Name, err)
	}
	st, err := wire.StampsOf(figs)
	if err != nil {
		return cur, nil // no stamp figures: nothing to check
	}
	p.lag.restarted(st, time.Now())
	if cur <= st.Last || st.Floor >= cur {
		return cur, nil
	}
	p.log.Error("the source came back with an older copy of its store and its stamps start below the cursor (its clock is behind the clock that copy had): streaming from where they start",
		"cursor", cur, "floor", st.Floor, "last", st.Last)
	return st.Floor, nil
}

// read moves rows from the stream into q until an error.
func (p *pump) read(ctx context.Context, st *client.Stream, q *queue) error {
	for {
		row, err := st.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			// A follow stream never ends normally; io.EOF means dbd
			// stopped it (shutting down).
			return staged(stageStream, fmt.Errorf("changes stream from %s: %w", p.src.Name, err))
		}
		p.lag.seen(row.Stamp, time.Now())
		if err := q.put(ctx, row); err != nil {
			return err
		}
	}
}

// heartbeat checks that both dbds answer, and reads the source's latest
// stamp for the lag figures.
//
// The source's status goes on the stream's connection, so a stall of that
// connection is seen. But while the queue is full the reader leaves the
// stream unread, and the status answer waits behind the rows: a merge
// that takes longer than HeartbeatTimeout (a slow destination, a large
// batch on a slow link, a rebuilt site's rows fetched one by one) is then
// no sign of a dead source, and ending the session would cancel that
// merge each time. Such a timeout is let pass; the next status, once the
// reader goes on, checks the connection again.
func (p *pump) heartbeat(ctx context.Context, src, live *client.Client, q *queue) error {
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	for {
		held := q.held()
		hctx, cancel := context.WithTimeout(ctx, p.cfg.HeartbeatTimeout)
		figs, err := src.Status(hctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && q.heldSince(held) {
			figs, err = nil, nil
		}
		if err == nil {
			hctx, cancel := context.WithTimeout(ctx, p.cfg.HeartbeatTimeout)
			err = live.Ping(hctx)
			cancel()
			if err != nil {
				err = fmt.Errorf("ping %s: %w", p.dst.Name, err)
			}
		} else {
			err = fmt.Errorf("status of %s: %w", p.src.Name, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return staged(stageLive, err)
		}
		if st, err := wire.StampsOf(figs); figs != nil && err == nil {
			p.lag.status(st, time.Now())
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// mergeLoop takes batches from q and merges them into dst, in order. When
// nothing is queued but the marker settled rows, it stores the risen
// cursor with an empty merge. It returns errRestream once the marker has
// room for receive rows it could not take (tracker.restream).
func (p *pump) mergeLoop(ctx context.Context, src, dst *client.Client, q *queue, stored uint64) (bool, error) {
	progressed := false
	for {
		if p.tr.restream() {
			return progressed, errRestream
		}
		batch := q.take(p.cfg.MaxBatchRows, p.cfg.MaxBatchBytes)
		if len(batch) == 0 {
			if f := p.tr.floor(); f > stored {
				if _, err := p.merge(ctx, src, dst, nil, f, true); err != nil {
					return progressed, err
				}
				stored = f
				continue
			}
			select {
			case <-q.notEmpty:
			case <-p.tr.advanced:
			case <-ctx.Done():
				return progressed, context.Cause(ctx)
			}
			continue
		}
		high, err := p.mergeBatch(ctx, src, dst, batch)
		if err != nil {
			return progressed, err
		}
		progressed = true
		stored = max(stored, high)
	}
}

// mergeBatch merges one batch with the cursor and hands its unmarked
// receive rows to the marker. It returns the cursor it stored.
func (p *pump) mergeBatch(ctx context.Context, src, dst *client.Client, batch []*wire.Row) (uint64, error) {
	rows := make([]wire.Row, len(batch))
	var recv []pendingRecv
	var mails []mailRow
	high := uint64(0)
	nbytes := 0
	for i, r := range batch {
		rows[i] = *r
		high = max(high, r.Stamp)
		nbytes += len(r.Content)
		switch r.Table {
		case model.Receive:
			if r.State.Col(model.ColBackedUp) >= model.FlagSet {
				continue
			}
			mail, _, err := model.ParseReceiveContent(r.Content)
			if err != nil {
				continue // not a mail delivery; nothing to mark
			}
			recv = append(recv, pendingRecv{key: r.Key, mail: mail, stamp: r.Stamp})
		case model.Mail:
			h, b, err := model.ParseMailContent(r.Content)
			if err == nil {
				mails = append(mails, mailRow{key: r.Key, header: h, body: b})
			}
		}
	}
	// A mail whose four rows are all in this batch, or merged by an
	// earlier batch of this session (p.known), is, once the merge
	// returns, durable at dst (merges answered on this session's one
	// connection) and at src (the changes stream shows durable rows only;
	// rows are never removed).
	p.known.begin(rows)
	for _, m := range mails {
		p.known.mail(m)
	}
	for i := range recv {
		if p.known.complete(recv[i].mail) {
			recv[i].at = []string{p.src.Name, p.dst.Name}
		}
	}
	// The stored cursor stays below this batch's unmarked receive rows
	// (and below earlier unsettled ones), so a restart streams them again.
	cursorOf := func(recv []pendingRecv) uint64 {
		cursor := p.tr.cursorFor(high)
		for _, r := range recv {
			cursor = min(cursor, r.stamp-1)
		}
		return cursor
	}
	marked := 0
	plain, all := rows, recv
	if p.cfg.MinCopies <= 2 {
		rows, recv, marked = p.known.markInBatch(slices.Clone(rows), slices.Clone(recv), p.cfg.MaxBatchRows)
	}
	cursor := cursorOf(recv)
	whole, err := p.merge(ctx, src, dst, rows, cursor, marked == 0)
	if marked > 0 && refused(err) {
		// dst refused the batch, and merged in parts it is not one
		// transaction: a row skipped as bad would leave a mail marked
		// that dst lacks a row of. So it goes without the marks, and
		// the marker checks those mails.
		rows, recv, marked = plain, all, 0
		cursor = cursorOf(recv)
		whole, err = p.merge(ctx, src, dst, rows, cursor, true)
	}
	if err != nil {
		return 0, err
	}
	if whole {
		p.known.merged(rows)
	} else {
		// Merged in parts, rows refused were skipped: that a mail's rows
		// were in the batch says nothing of dst any more, and the marker
		// must probe (before 2026-11-30 it trusted the batch and marked
		// such a mail at its origin).
		for i := range recv {
			recv[i].at = nil
		}
	}
	p.m.mergedRows.WithLabelValues(p.src.Name, p.dst.Name).Add(float64(len(batch)))
	p.m.mergedBytes.WithLabelValues(p.src.Name, p.dst.Name).Add(float64(nbytes))
	p.m.marked.Add(float64(marked))
	p.lag.done(high)
	p.tr.mergedUpTo(high, recv)
	p.mk.add(p.tr, recv, mails)
	return cursor, nil
}

// merge sends one merge. If dst refuses the batch as invalid or too large,
// it merges the batch in parts and skips (logs, counts) the rows refused
// alone: one bad row must not stop replication for good. A row sent
// without content (src said dst has it) that dst refuses — dst lost it, e.g.
// a rebuilt site — is fetched from src with its content and merged again;
// src must not be the client whose connection carries the changes stream.
// It reports whether the batch went in whole, as sent, in one transaction.
// Without parts it does not fall back to merging the batch in parts: a
// refused batch returns the refusal (and whole false).
func (p *pump) merge(ctx context.Context, src, dst *client.Client, rows []wire.Row, cursor uint64, parts bool) (whole bool, err error) {
	mctx, cancel := p.mergeCtx(ctx, rows)
	defer cancel()
	_, err = dst.Merge(mctx, rows, p.cursor, cursor)
	if err == nil {
		p.m.merges.WithLabelValues(p.src.Name, p.dst.Name).Inc()
		return true, nil
	}
	if !parts && refused(err) {
		return false, err
	}
	if !refused(err) || len(rows) == 0 {
		return false, staged(stageMerge, fmt.Errorf("merge into %s: %w", p.dst.Name, err))
	}
	// Most often dst lacks rows sent without content: it is a restored or
	// rebuilt site, and a refused batch is followed by many more. Send
	// those rows with their content, then the batch once more. The refill
	// gets times of its own (ctx, not mctx): its rows cross two links, src
	// to backupd and backupd to dst, one after the other, and mctx counts
	// their bytes once.
	if n, err := p.refill(ctx, src, dst, rows); err != nil {
		return false, staged(stageMerge, fmt.Errorf("merge into %s the rows it lacks: %w", p.dst.Name, err))
	} else if n > 0 {
		cancel()
		mctx, cancel = p.mergeCtx(ctx, rows)
		defer cancel()
		_, err := dst.Merge(mctx, rows, p.cursor, cursor)
		if err == nil {
			p.m.merges.WithLabelValues(p.src.Name, p.dst.Name).Inc()
			return true, nil
		}
		if !refused(err) {
			return false, staged(stageMerge, fmt.Errorf("merge into %s: %w", p.dst.Name, err))
		}
	}
	cancel()
	if err := p.mergeParts(ctx, src, dst, rows); err != nil {
		return false, err
	}
	cctx, cancel := p.mergeCtx(ctx, nil)
	defer cancel()
	if _, err := dst.Merge(cctx, nil, p.cursor, cursor); err != nil {
		return false, staged(stageMerge, fmt.Errorf("store cursor at %s: %w", p.dst.Name, err))
	}
	p.m.merges.WithLabelValues(p.src.Name, p.dst.Name).Inc()
	return false, nil
}

// mergeCtx bounds one merge of rows: the time it may take grows with the
// bytes it moves (rows sent without content move theirs if dst lacks
// them: refill).
func (p *pump) mergeCtx(ctx context.Context, rows []wire.Row) (context.Context, context.CancelFunc) {
	var size uint64
	for i := range rows {
		size += max(rows[i].Size, uint64(len(rows[i].Content)))
	}
	return p.sizeCtx(ctx, size)
}

// sizeCtx bounds one request that moves size bytes over one link.
func (p *pump) sizeCtx(ctx context.Context, size uint64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.RequestTimeout+time.Duration(size)*time.Second/time.Duration(p.cfg.MinMergeRate))
}

// mergeParts merges rows, which dst refused as one merge, in halves, each
// its own merge with its own time, and splits a refused half again, down
// to the single rows it skips (logged at error level and counted). So k
// bad rows in a batch of n cost about 2·k·log2(n) merges. Before
// 2026-12-03 every row went alone, and all of them within the time of the
// one refused merge: a full batch with one bad row, over a link with a
// round trip of more than 7 ms (4096 round trips in 30 s), never got
// through, its session ended each time, and replication stopped for good.
func (p *pump) mergeParts(ctx context.Context, src, dst *client.Client, rows []wire.Row) error {
	if len(rows) == 1 {
		return p.mergeRow(ctx, src, dst, &rows[0])
	}
	half := len(rows) / 2
	for _, part := range [2][]wire.Row{rows[:half], rows[half:]} {
		if len(part) == 1 {
			if err := p.mergeRow(ctx, src, dst, &part[0]); err != nil {
				return err
			}
			continue
		}
		mctx, cancel := p.mergeCtx(ctx, part)
		_, err := dst.Merge(mctx, part, "", 0)
		cancel()
		if err == nil {
			continue
		}
		if !refused(err) {
			return staged(stageMerge, fmt.Errorf("merge into %s: %w", p.dst.Name, err))
		}
		if err := p.mergeParts(ctx, src, dst, part); err != nil {
			return err
		}
	}
	return nil
}

// mergeRow merges one row dst refused as part of a merge. A row without
// content that dst refuses is read from src with its content; a row
// refused alone is skipped, loudly.
func (p *pump) mergeRow(ctx context.Context, src, dst *client.Client, r *wire.Row) error {
	mctx, cancel := p.mergeCtx(ctx, []wire.Row{*r})
	defer cancel()
	_, err := dst.Merge(mctx, []wire.Row{*r}, "", 0)
	if refused(err) && !r.HasContent {
		// The find and the merge cross two links one after the other:
		// each gets the row's time (see merge).
		var full *wire.Row
		fctx, cancel := p.mergeCtx(ctx, []wire.Row{*r})
		full, err = src.FindKey(fctx, r.Table, r.Key)
		cancel()
		if err == nil {
			fctx, cancel := p.mergeCtx(ctx, []wire.Row{*full})
			_, err = dst.Merge(fctx, []wire.Row{*full}, "", 0)
			cancel()
		} else if errors.Is(err, client.ErrNotFound) {
			err = &wire.Error{Code: wire.CodeBadRequest, Msg: "row vanished at the source"}
		}
	}
	if refused(err) {
		p.m.badRows.WithLabelValues(p.src.Name, p.dst.Name).Inc()
		p.log.Error("destination refused a row; skipped", "table", r.Table.String(),
			"key", r.Key.String(), "size", r.Size, "err", err)
		return nil
	}
	if err != nil {
		return staged(stageMerge, fmt.Errorf("merge into %s: %w", p.dst.Name, err))
	}
	return nil
}

// refillPar bounds the finds refill has in flight on one connection.
const refillPar = 64

// refill finds the rows of a refused batch that came without content and
// that dst lacks, reads them from src with their content and merges them
// into dst, in merges bounded like a batch. It returns how many it merged.
// They are merged under the pump's cursor, left as it is: their state is
// exactly src's, so the reverse pump sends them back without content. A
// row src no longer has is left out (the merge row by row skips it).
// Finds go refillPar at a time: over a link with a long round trip, one
// at a time would cost a round trip per row.
func (p *pump) refill(ctx context.Context, src, dst *client.Client, rows []wire.Row) (int, error) {
	var bare []int
	for i := range rows {
		if !rows[i].HasContent {
			bare = append(bare, i)
		}
	}
	lacks := make([]bool, len(bare))
	fctx, cancel := p.mergeCtx(ctx, rows) // the time the refused merge had
	defer cancel()
	err := eachPar(fctx, len(bare), func(ctx context.Context, j int) error {
		r := &rows[bare[j]]
		_, err := dst.FindMeta(ctx, r.Table, r.Key)
		if errors.Is(err, client.ErrNotFound) {
			lacks[j], err = true, nil
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	var missing []int
	for j, l := range lacks {
		if l {
			missing = append(missing, bare[j])
		}
	}
	merged := 0
	for len(missing) > 0 {
		// Groups of finds, bounded like a batch (Size says how large a
		// row is), then one merge: at most two batches in memory, or one
		// row larger than that.
		var sub []wire.Row
		size := 0
		for len(missing) > 0 && len(sub) < p.cfg.MaxBatchRows && size < p.cfg.MaxBatchBytes {
			n, gsize := 0, uint64(0)
			for n < len(missing) && n < refillPar && len(sub)+n < p.cfg.MaxBatchRows &&
				(n == 0 || gsize+rows[missing[n]].Size <= uint64(p.cfg.MaxBatchBytes)) {
				gsize += rows[missing[n]].Size
				n++
			}
			group := missing[:n]
			missing = missing[n:]
			full := make([]*wire.Row, len(group))
			gctx, cancel := p.sizeCtx(ctx, gsize)
			err := eachPar(gctx, len(group), func(ctx context.Context, j int) error {
				r := &rows[group[j]]
				row, err := src.FindKey(ctx, r.Table, r.Key)
				if errors.Is(err, client.ErrNotFound) {
					return nil
				}
				full[j] = row
				return err
			})
			cancel()
			if err != nil {
				return merged, err
			}
			for _, r := range full {
				if r != nil {
					sub = append(sub, *r)
					size += len(r.Content)
				}
			}
		}
		if len(sub) == 0 {
			continue
		}
		mctx, cancel := p.mergeCtx(ctx, sub)
		_, err := dst.Merge(mctx, sub, p.cursor, 0)
		cancel()
		if err != nil {
			if refused(err) {
				return merged, nil // the merge row by row finds the bad row
			}
			return merged, err
		}
		merged += len(sub)
	}
	return merged, nil
}

// eachPar calls fn(ctx, i) for i in [0, n), refillPar at a time, and
// returns the first error (the others are cancelled).
func eachPar(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, refillPar)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// refused reports whether dbd refused a request for good (retrying the
// same bytes cannot help).
func refused(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && (we.Code == wire.CodeBadRequest || we.Code == wire.CodeTooLarge)
}
