package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
)

// Bounds of streaming answers.
const (
	maxScan        = 10000 // rows in one scan answer
	changesPerView = 1024  // rows read under one snapshot before taking a fresh one
	watchBuffer    = 4096  // events a watcher may fall behind before it must resubscribe
)

// errCorrupt ends a connection when a stored content does not match its
// recorded size: the answer header already promised another length.
var errCorrupt = errors.New("server: stored content does not match its size")

// errCutShort marks an error met after frames of the answer went out
// (message.cut): an error answer on the same request id would be read as
// the answer's rest, so the connection ends instead.
var errCutShort = errors.New("server: answer cut short")

// serve answers one request. It is the only place that turns errors into
// answers (answerError).
func (c *conn) serve(ctx context.Context, id uint32, req *wire.Request) {
	start := time.Now()
	var err error
	result := "ok"
	switch req.Op {
	case wire.OpPing:
		err = c.sendMessage(id, wire.AppendResult(nil, req.Op, &wire.Result{}))
	case wire.OpFindOrInsert, wire.OpSet, wire.OpIncrement, wire.OpBatch:
		result, err = c.serveMutation(id, req)
	case wire.OpArm:
		result, err = c.serveArm(ctx, id, req)
	case wire.OpFind:
		result, err = c.serveFind(id, req)
	case wire.OpMerge:
		err = c.serveMerge(id, req)
	case wire.OpCursor:
		err = c.serveCursor(id, req)
	case wire.OpStatus:
		err = c.serveStatus(id)
	case wire.OpWatch:
		err = c.serveWatch(ctx, id, req, start)
	case wire.OpChanges:
		err = c.serveChanges(ctx, id, req, start)
	case wire.OpDump:
		err = c.serveDump(ctx, id)
	case wire.OpScan:
		err = c.serveScan(ctx, id, req)
	case wire.OpList:
		err = c.serveList(ctx, id, req)
	case wire.OpMails:
		result, err = c.serveMails(ctx, id, req)
	case wire.OpMail:
		result, err = c.serveMail(ctx, id, req)
	case wire.OpCheckpoint:
		err = c.serveCheckpoint(id, req)
	default:
		err = fmt.Errorf("%w: unknown op", store.ErrInvalid)
	}
	if err != nil {
		result = c.answerError(id, req.Op, err)
	}
	c.s.m.Requests.WithLabelValues(req.Op.String(), result).Inc()
	if !isStream(req.Op) {
		c.s.m.RequestSeconds.WithLabelValues(req.Op.String()).Observe(time.Since(start).Seconds())
	}
}

// answerError maps err to an error answer and returns the metric result.
// Peers see the text of validation errors only; internal detail is logged.
func (c *conn) answerError(id uint32, op wire.Op, err error) string {
	var code wire.Code
	msg := err.Error()
	switch {
	case errors.Is(err, errCorrupt):
		c.log.Error("corrupt content; closing connection", "op", op.String(), "err", err)
		c.wc.Close()
		return wire.CodeInternal.String()
	case errors.Is(err, errWrite), errors.Is(err, context.Canceled) && c.ctx.Err() != nil:
		return "conn-lost" // the connection is gone: nobody to answer
	case errors.Is(err, errCutShort):
		c.log.Error("answer cut short by an error; closing connection", "op", op.String(), "err", err)
		c.wc.Close()
		return wire.CodeInternal.String()
	case errors.Is(err, errCanceledByClient):
		return "canceled"
	case errors.Is(err, store.ErrInvalid):
		code = wire.CodeBadRequest
	case errors.Is(err, auth.ErrForbidden):
		code = wire.CodeForbidden
	case errors.Is(err, store.ErrFailed) && store.OutOfSpace(c.s.st.Err()):
		// The store failed because the disk is full: say so, so that a
		// mail server can answer "insufficient system storage" (docs/wire.md
		// §5.7). It is still a failure: nothing more is acknowledged.
		code, msg = wire.CodeNoSpace, "dbd's disk is full"
	case errors.Is(err, store.ErrFailed), errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled):
		code, msg = wire.CodeUnavailable, "dbd cannot serve now"
	case errors.Is(err, errOverflow):
		code = wire.CodeUnavailable
	default:
		c.log.Error("request failed", "op", op.String(), "err", err)
		code, msg = wire.CodeInternal, "internal error"
	}
	c.sendError(id, code, msg)
	return code.String()
}

var (
	errCanceledByClient = errors.New("server: canceled by client")
	errOverflow         = errors.New("watch fell behind; read the rows again and resubscribe")
)

func mutationOf(r *wire.Request) store.Mutation {
	m := store.Mutation{Table: r.Table, Name: r.Name, Value: r.Value}
	switch r.Op {
	case wire.OpFindOrInsert:
		m.Kind, m.Content = store.Insert, r.Content
	case wire.OpSet:
		m.Kind, m.Key = store.Set, r.Ref.KeyIn(r.Table)
	case wire.OpIncrement:
		m.Kind, m.Key = store.Add, r.Ref.KeyIn(r.Table)
	}
	return m
}

func (c *conn) serveMutation(id uint32, req *wire.Request) (string, error) {
	var muts []store.Mutation
	if req.Op == wire.OpBatch {
		muts = make([]store.Mutation, len(req.Batch))
		for i := range req.Batch {
			muts[i] = mutationOf(&req.Batch[i])
		}
	} else {
		muts = []store.Mutation{mutationOf(req)}
	}
	// NB: a write is not abandoned when the client cancels or goes away:
	// it may already be in a commit group. Only the server's own ctx
	// (Close) stops the wait; context.WithoutCancel(ctx) detached it from
	// that one too, so Close waited for a stalled fsync.
	res, err := c.s.st.Apply(c.s.ctx, muts)
	if err != nil {
		return "", err
	}
	out := wire.Result{}
	if req.Op == wire.OpBatch {
		out.Results = make([]wire.Result, len(res))
		for i, r := range res {
			out.Results[i] = wire.Result{NotFound: r.NotFound, RowNo: r.RowNo, New: r.New}
		}
	} else {
		out = wire.Result{NotFound: res[0].NotFound, RowNo: res[0].RowNo, New: res[0].New}
	}
	result := "ok"
	if out.NotFound {
		result = "not-found"
	}
	return result, c.sendMessage(id, wire.AppendResult(nil, req.Op, &out))
}

// maxArmWait bounds how long an arm request waits for its conditions,
// whatever it asks: longer than any decision window.
const maxArmWait = 10 * time.Minute

// serveArm serves an arm request (store.Arm). It waits with the request's
// context: a client that cancels or goes away withdraws it, as nobody
// would act on its answer.
func (c *conn) serveArm(ctx context.Context, id uint32, req *wire.Request) (string, error) {
	conds := make([]store.Cond, len(req.Conds))
	for i, cd := range req.Conds {
		conds[i] = store.Cond{Table: cd.Table, Key: cd.Key, Name: cd.Name, Mask: cd.Mask, Want: cd.Want}
	}
	muts := make([]store.Mutation, len(req.Batch))
	for i := range req.Batch {
		muts[i] = mutationOf(&req.Batch[i])
	}
	wait := min(time.Duration(min(req.Value, uint64(maxArmWait/time.Millisecond)))*time.Millisecond, maxArmWait)
	res, err := c.s.st.Arm(ctx, conds, muts, time.Now().Add(wait))
	out := wire.Result{}
	switch {
	case errors.Is(err, store.ErrNotFired):
		return "not-fired", c.sendMessage(id, wire.AppendResult(nil, req.Op, &out))
	case err != nil:
		return "", err
	}
	out.Fired = true
	out.Results = make([]wire.Result, len(res))
	for i, r := range res {
		out.Results[i] = wire.Result{NotFound: r.NotFound, RowNo: r.RowNo, New: r.New}
	}
	return "ok", c.sendMessage(id, wire.AppendResult(nil, req.Op, &out))
}

func (c *conn) serveFind(id uint32, req *wire.Request) (string, error) {
	v, err := c.s.st.View()
	if err != nil {
		return "", err
	}
	defer v.Close()
	row, ok, err := v.Find(req.Table, req.Ref.KeyIn(req.Table))
	if err != nil {
		return "", err
	}
	if !ok {
		return "not-found", c.sendMessage(id, wire.AppendResult(nil, req.Op, &wire.Result{NotFound: true}))
	}
	parts := withContent
	if req.Flag {
		parts = 0
	}
	m := c.newMessage(id)
	m.buf = append(m.buf, byte(wire.KindResult))
	if err := c.writeRow(m, v, row, parts); err != nil {
		return "", err
	}
	return "ok", m.finish()
}

// rowParts says which optional parts of a row an answer carries.
type rowParts uint8

const (
	withContent rowParts = 1 << iota // the content, streamed from the snapshot
	withStamp                        // the change stamp: replication streams only (SPEC §3)
)

// writeRow writes a row to m, streaming its content from the snapshot in
// chunks (never the whole content in memory) if asked.
func (c *conn) writeRow(m *message, v *store.View, row store.Row, parts rowParts) error {
	wr := wireRow(row)
	if parts&withStamp != 0 {
		wr.Stamp = row.Stamp
	}
	wr.HasContent = parts&withContent != 0
	m.Write(wire.AppendRowHeader(nil, &wr))
	if !wr.HasContent || m.err != nil {
		return m.err
	}
	if v == nil {
		return m.cut(writeContentFrom(m, row, c.s.st.RecentContent)) // a row of store.RecentChanges
	}
	return m.cut(writeContent(m, v, row))
}

// writeContent writes row's content to w (an answer message, or a packer's
// buffer), streamed from the snapshot in chunks unless it was read with
// the row; exactly row.Size bytes, or errCorrupt.
func writeContent(w io.Writer, v *store.View, row store.Row) error {
	// Chunks: a row from Find has its content's place with it, so the
	// meta is not read again.
	return writeContentFrom(w, row, v.Chunks)
}

// writeContentFrom is writeContent with the content's chunks read by
// chunks: View.Chunks, or Store.RecentContent for a row of
// store.RecentChanges (which has no view).
//
// The callback captures only what it needs, not row: a captured row (some
// 250 bytes) went to the heap on every call, the inline ones too, about
// 1 kB a mail in op mails.
func writeContentFrom(w io.Writer, row store.Row, chunks func(store.Row, func([]byte) error) error) error {
	if row.Inline != nil && uint64(len(row.Inline)) == row.Size {
		_, err := w.Write(row.Inline) // read with the row: no second lookup
		return err
	}
	var n uint64
	size := row.Size
	err := chunks(row, func(chunk []byte) error {
		n += uint64(len(chunk))
		if n > size {
			return errCorrupt
		}
		_, err := w.Write(chunk)
		return err
	})
	if err == nil && n != row.Size {
		err = fmt.Errorf("%w: %s %s has %d bytes, meta says %d", errCorrupt, row.Table, row.Key, n, row.Size)
	}
	return err
}

// wireRow converts a stored row for an answer; the change stamp is left out
// (see withStamp).
func wireRow(r store.Row) wire.Row {
	return wire.Row{Table: r.Table, Key: r.Key, RowNo: r.RowNo, State: r.State, EncodedState: r.EncodedState, Size: r.Size}
}

func (c *conn) serveMerge(id uint32, req *wire.Request) error {
	rows := make([]store.MergeRow, len(req.Rows))
	for i, r := range req.Rows {
		rows[i] = store.MergeRow{Table: r.Table, Key: r.Key, State: r.State}
		if r.HasContent {
			rows[i].Content = r.Content
			if rows[i].Content == nil {
				rows[i].Content = []byte{}
			}
		}
	}
	// The server's ctx, not the request's: see serveMutation.
	res, err := c.s.st.Merge(c.s.ctx, rows, req.Name, req.Value)
	if err != nil {
		return err
	}
	out := wire.Result{Results: make([]wire.Result, len(res))}
	for i, r := range res {
		out.Results[i] = wire.Result{RowNo: r.RowNo, New: r.New}
	}
	return c.sendMessage(id, wire.AppendResult(nil, req.Op, &out))
}

func (c *conn) serveCursor(id uint32, req *wire.Request) error {
	v, err := c.s.st.View()
	if err != nil {
		return err
	}
	defer v.Close()
	val, err := v.Cursor(req.Name)
	if err != nil {
		return err
	}
	return c.sendMessage(id, wire.AppendResult(nil, req.Op, &wire.Result{Value: val}))
}

// serveCheckpoint writes a checkpoint of the store under dbd's data folder
// and answers its path. It runs in the request's own goroutine: the hard
// links and the WAL copy take a moment but hold up no other request.
func (c *conn) serveCheckpoint(id uint32, req *wire.Request) error {
	path, err := c.s.st.Checkpoint(req.Name)
	if err != nil {
		return err
	}
	c.log.Info("checkpoint written", "path", path)
	return c.sendMessage(id, wire.AppendResult(nil, req.Op, &wire.Result{Path: path}))
}

func (c *conn) serveStatus(id uint32) error {
	st := c.s.st
	before, floor := st.StampRun()
	figs := []wire.Figure{
		{Name: "site", Value: st.Site()},
		{Name: "counter.slot", Value: st.CounterSlot()},
		{Name: "stamp", Value: strconv.FormatUint(st.LastStamp(), 10)},
		{Name: "stamp.before", Value: strconv.FormatUint(before, 10)},
		{Name: "stamp.floor", Value: strconv.FormatUint(floor, 10)},
		{Name: "incarnation", Value: strconv.FormatUint(st.Incarnation(), 10)},
		{Name: "watches", Value: strconv.Itoa(st.NumWatches())},
	}
	c.s.mu.Lock()
	figs = append(figs, wire.Figure{Name: "connections", Value: strconv.Itoa(len(c.s.mu.conns))})
	c.s.mu.Unlock()
	for _, t := range model.Tables() {
		figs = append(figs, wire.Figure{Name: "rows." + t.String(), Value: strconv.FormatUint(st.Count(t), 10)})
	}
	pm := st.Metrics()
	figs = append(figs,
		wire.Figure{Name: "disk.bytes", Value: strconv.FormatUint(pm.DiskSpaceUsage(), 10)},
		wire.Figure{Name: "storage", Value: storageState(st.Err())},
		wire.Figure{Name: "role", Value: string(c.role)},
	)
	if c.role == auth.Admin {
		figs = append(figs, c.s.clientFigures()...)
	}
	return c.sendMessage(id, wire.AppendResult(nil, wire.OpStatus, &wire.Result{Status: figs}))
}

// storageState names the store's state for status, given its failure (nil:
// none): "ok", "no-space" (the disk filled; dbd waits for free space and
// then exits, docs/dbd.md) or "failed". dbd stays up while its disk is
// full, so this is how an operator asking dbd sees why writes fail.
func storageState(failure error) string {
	switch {
	case failure == nil:
		return "ok"
	case store.OutOfSpace(failure):
		return "no-space"
	}
	return "failed"
}

// sendEvent sends one stream event carrying row.
func (c *conn) sendEvent(id uint32, v *store.View, row store.Row, parts rowParts) error {
	m := c.newMessage(id)
	m.buf = wire.AppendEventHeader(m.buf)
	if err := c.writeRow(m, v, row, parts); err != nil {
		return err
	}
	return m.finish()
}

// endStream sends the end of a stream, or nothing if the client cancelled.
func (c *conn) endStream(ctx context.Context, id uint32) error {
	if ctx.Err() != nil {
		return errCanceledByClient
	}
	return c.sendMessage(id, wire.AppendEnd(nil))
}

// serveWatch subscribes first, then (with Flag) sends the current state of
// the requested rows, then every committed change. The first message, an
// empty result, tells the client the subscription is live, so a client
// that reads a row after Watch returns cannot miss a change to it.
func (c *conn) serveWatch(ctx context.Context, id uint32, req *wire.Request, start time.Time) error {
	f := store.Filter{Table: req.Table, Parent: req.Parent}
	if req.Cond != nil {
		f.With, f.Without = req.Cond.With, req.Cond.Without
	}
	if len(req.Keys) > 0 {
		f.Keys = make(map[model.Key]struct{}, len(req.Keys))
		for _, k := range req.Keys {
			f.Keys[k] = struct{}{}
		}
	}
	sub := c.s.st.Watch(f, watchBuffer)
	defer sub.Close()
	c.s.m.Streams.WithLabelValues("watch").Inc()
	defer c.s.m.Streams.WithLabelValues("watch").Dec()
	if err := c.sendMessage(id, wire.AppendResult(nil, wire.OpPing, &wire.Result{})); err != nil {
		return err
	}
	if req.Flag {
		v, err := c.s.st.View()
		if err != nil {
			return err
		}
		for _, k := range req.Keys {
			row, ok, err := v.Find(req.Table, k)
			if err == nil && ok && f.Match(&row) {
				err = c.sendEvent(id, v, row, 0)
			}
			if err != nil {
				v.Close()
				return err
			}
		}
		v.Close()
	}
	c.s.m.RequestSeconds.WithLabelValues("watch").Observe(time.Since(start).Seconds())
	var rows []store.Row
	for {
		select {
		case <-ctx.Done():
			return c.endStream(ctx, id)
		case <-sub.Ready:
		}
		var open bool
		rows, open = sub.Take(rows[:0])
		if err := c.sendEvents(id, rows); err != nil {
			return err
		}
		if !open {
			if sub.Overflowed() {
				return errOverflow
			}
			return c.endStream(ctx, id)
		}
		if cap(rows) > 256 {
			rows = nil // keep no burst's buffer while idle
		}
	}
}

// serveChanges streams every row changed after the cursor, with content, in
// stamp order; with Flag it then waits for new commits and goes on (push,
// no polling). The stamp of each event is the cursor to resume from.
func (c *conn) serveChanges(ctx context.Context, id uint32, req *wire.Request, start time.Time) error {
	c.s.m.Streams.WithLabelValues("changes").Inc()
	defer c.s.m.Streams.WithLabelValues("changes").Dec()
	cursor := req.Value
	first := true
	var recent []store.Row
	for {
		// A stream that keeps up takes the changes from memory (see
		// store.RecentChanges); one that is behind reads the log.
		var n int
		var ok bool
		var err error
		if recent, ok = c.s.st.RecentChanges(cursor, changesPerView, recent[:0]); ok {
			n, err = c.sendChanges(ctx, id, req, nil, recent, &cursor)
			clear(recent) // no states or contents held while waiting
		} else {
			n, err = c.sendLoggedChanges(ctx, id, req, &cursor)
		}
		if err != nil {
			if ctx.Err() != nil {
				return errCanceledByClient
			}
			return err
		}
		if first {
			c.s.m.RequestSeconds.WithLabelValues("changes").Observe(time.Since(start).Seconds())
			first = false
		}
		if n >= changesPerView {
			continue
		}
		if !req.Flag {
			return c.endStream(ctx, id)
		}
		if err := c.s.st.WaitChange(ctx, cursor); err != nil {
			if ctx.Err() != nil {
				return c.endStream(ctx, id)
			}
			return err
		}
	}
}

// sendLoggedChanges sends up to changesPerView changes after *cursor from
// the change log, under one view, and raises *cursor past them.
func (c *conn) sendLoggedChanges(ctx context.Context, id uint32, req *wire.Request, cursor *uint64) (int, error) {
	v, err := c.s.st.View()
	if err != nil {
		return 0, err
	}
	defer v.Close()
	rows := make([]store.Row, 0, 64)
	n := 0
	err = v.Changes(*cursor, func(r store.Row) error {
		rows = append(rows, r)
		if len(rows) == cap(rows) {
			k, err := c.sendChanges(ctx, id, req, v, rows, cursor)
			n += k
			rows = rows[:0]
			if err != nil {
				return err
			}
		}
		if n+len(rows) >= changesPerView {
			return store.ErrStop
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	k, err := c.sendChanges(ctx, id, req, v, rows, cursor)
	return n + k, err
}

// sendChanges sends rows as changes events and raises *cursor past each
// one sent. v is the view they were read in, or nil for rows of
// store.RecentChanges.
func (c *conn) sendChanges(ctx context.Context, id uint32, req *wire.Request, v *store.View, rows []store.Row, cursor *uint64) (int, error) {
	// The rows go out in as few write(2)s as the buffer allows, not one
	// each.
	release := c.wc.Hold()
	defer release()
	for i := range rows {
		if ctx.Err() != nil {
			return i, ctx.Err()
		}
		how := withContent | withStamp
		if req.Name != "" && rows[i].Origin == req.Name {
			// The requester's own site sent exactly this state: it has
			// the content. Send the row without it, so the cursor still
			// advances but a large body does not travel back.
			how = withStamp
		}
		if err := c.sendEvent(id, v, rows[i], how); err != nil {
			return i, err
		}
		*cursor = rows[i].Stamp
	}
	return len(rows), nil
}

// serveDump streams every row with the SHA-256 of its content (not the
// content), sorted by table and key.
func (c *conn) serveDump(ctx context.Context, id uint32) error {
	v, err := c.s.st.View()
	if err != nil {
		return err
	}
	defer v.Close()
	err = v.Rows(func(r store.Row) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h := sha256.New()
		if err := v.Content(r.Table, r.Key, func(ch []byte) error { h.Write(ch); return nil }); err != nil {
			return err
		}
		wr := wireRow(r)
		wr.HasDigest = true
		h.Sum(wr.Digest[:0])
		m := c.newMessage(id)
		m.buf = wire.AppendEventHeader(m.buf)
		m.buf = wire.AppendRowHeader(m.buf, &wr)
		return m.finish()
	})
	if err != nil {
		if ctx.Err() != nil {
			return errCanceledByClient
		}
		return err
	}
	return c.endStream(ctx, id)
}

// serveScan streams up to Value (at most maxScan) of the newest rows of a
// table by local row number, without content; with req.Before, of the
// rows numbered below it (a client pages by passing the smallest row
// number of the previous page).
func (c *conn) serveScan(ctx context.Context, id uint32, req *wire.Request) error {
	limit := int(min(req.Value, maxScan))
	v, err := c.s.st.View()
	if err != nil {
		return err
	}
	defer v.Close()
	send := func(r store.Row) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.sendEvent(id, v, r, 0)
	}
	if req.Before > 0 {
		err = v.NewestBelow(req.Table, req.Before, limit, send)
	} else {
		err = v.Newest(req.Table, limit, send)
	}
	if err != nil {
		if ctx.Err() != nil {
			return errCanceledByClient
		}
		return err
	}
	return c.endStream(ctx, id)
}

// serveList streams up to Value (at most maxScan) rows of the table whose
// parent is req.Parent and whose row number is above req.After, in row
// number order, with their contents (a receive row's is its 64-byte pair).
// A client pages by passing the last row number it got as After. With
// req.Flag (wire.ListPacked) the rows go as rows answers, listBatch rows
// read at a time and as many a message as fit in a frame; without it,
// one event a row, as clients older than the flag expect.
func (c *conn) serveList(ctx context.Context, id uint32, req *wire.Request) error {
	if !model.Indexed(req.Table) {
		return fmt.Errorf("%w: table %s has no parent index", store.ErrInvalid, req.Table)
	}
	limit := int(min(req.Value, maxScan))
	v, err := c.s.st.View()
	if err != nil {
		return err
	}
	defer v.Close()
	release := c.wc.Hold() // one write(2) per full buffer, not per row
	defer release()
	var p *packer
	if req.Flag {
		p = c.newPacker(id, v)
		defer p.close()
	}
	err = v.Children(req.Table, *req.Parent, req.After, limit, func(r store.Row) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p == nil {
			return c.sendEvent(id, v, r, withContent)
		}
		return p.add(r, withContent)
	})
	if err == nil && p != nil {
		err = p.flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return errCanceledByClient
		}
		return err
	}
	return c.endStream(ctx, id)
}

// serveMail streams, from one snapshot, the rows that make the mail of a
// receive row: the receive row, its mail, header and body rows and the
// received row of the acknowledged delivery (model.MailReceived),
// each with content, then the end. pop3d and imapd read a mail in one round
// trip instead of two dependent ones. A missing receive row is not-found;
// a missing later row (not replicated here yet) is left out, and the
// client sees which rows came.
func (c *conn) serveMail(ctx context.Context, id uint32, req *wire.Request) (string, error) {
	v, err := c.s.st.View()
	if err != nil {
		return "", err
	}
	defer v.Close()
	release := c.wc.Hold() // one write(2) for the answer, not one a row
	defer release()
	found, err := mailRows(v, req.Ref.Key, func(r store.Row) error {
		return c.sendEvent(id, v, r, withContent)
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "not-found", c.sendMessage(id, wire.AppendResult(nil, req.Op, &wire.Result{NotFound: true}))
	}
	return "ok", c.endStream(ctx, id)
}

// serveMails is serveMail for several receive keys, from one snapshot: the
// rows of each mail in turn, each mail starting with its receive row; a
// key without a receive row adds nothing. With a byte budget it stops
// after the mail whose contents bring the answer to the budget. Readers
// of many mails (a FETCH, POP3's read-ahead) save a request, a snapshot
// and a write(2) per mail. With NoBody (wire.MailsNoBody) each body row
// goes without its content, with its size, and does not count towards
// the budget: a folder listing reads headers and sizes only.
//
// Each row goes into the answer as soon as it is read, while its meta
// value is still Pebble's: collecting the rows first needed a copy of
// every small content and a row list, some 5 kB of memory a corpus mail.
// A read error after rows went out ends the stream with the error.
func (c *conn) serveMails(ctx context.Context, id uint32, req *wire.Request) (string, error) {
	v, err := c.s.st.View()
	if err != nil {
		return "", err
	}
	defer v.Close()
	emit := func(r store.Row, parts rowParts) error { return c.sendEvent(id, v, r, parts) }
	var p *packer
	if req.Flag {
		// No hold while reading: frames go out as they fill, so the other
		// request of a reader's window is not kept waiting behind this one.
		p = c.newPacker(id, v)
		defer p.close()
		emit = p.add
	} else {
		release := c.wc.Hold()
		defer release()
	}
	var bytes uint64 // of the contents sent: what the reader holds
	for _, k := range req.Keys {
		if ctx.Err() != nil {
			return "ok", errCanceledByClient
		}
		if _, err := mailRows(v, k, func(r store.Row) error {
			if req.NoBody && r.Table == model.Body {
				// Its size only: a body kept in chunks is not read.
				return emit(r, 0)
			}
			bytes += r.Size
			return emit(r, withContent)
		}); err != nil {
			return "", err
		}
		// The budget bounds what the reader holds, not what one mail
		// may be: the mail that reaches it is sent whole, so every
		// request that finds a mail makes progress.
		if req.Value > 0 && bytes >= req.Value {
			break
		}
	}
	if p != nil {
		release := c.wc.Hold() // the last rows and the end in one write(2)
		defer release()
		if err := p.flush(); err != nil {
			return "ok", err
		}
	}
	return "ok", c.endStream(ctx, id)
}

// mailRows calls emit with the rows that make the mail of receive row rk,
// as it reads them: the receive row, then (those present) its mail,
// header and body rows and the acknowledged delivery's received row.
// found is false when there is no receive row. A row handed to emit is
// valid only until emit returns (its content and state are the view's
// until its next read); its state is left encoded, as stored, since the
// answer passes it on.
func mailRows(v *store.View, rk model.Key, emit func(store.Row) error) (found bool, _ error) {
	recv, ok, err := v.FindEncoded(model.Receive, rk)
	if err != nil || !ok {
		return false, err
	}
	// What recv names is taken from it before the next read.
	content, err := smallContent(v, recv)
	if err != nil {
		return true, err
	}
	mk, _, perr := model.ParseReceiveContent(content)
	received, hasReceived, err := model.MailReceivedEncoded(recv.EncodedState)
	if err != nil {
		return true, fmt.Errorf("read row %s %s: %w", model.Receive, rk, err)
	}
	if err := emit(recv); err != nil {
		return true, err
	}
	add := func(t model.Table, k model.Key) error {
		row, ok, err := v.FindEncoded(t, k)
		if err != nil || !ok {
			return err
		}
		return emit(row)
	}
	if perr == nil {
		mrow, ok, err := v.FindEncoded(model.Mail, mk)
		if err != nil {
			return true, err
		}
		if ok {
			mc, err := smallContent(v, mrow)
			if err != nil {
				return true, err
			}
			hk, bk, perr := model.ParseMailContent(mc)
			if err := emit(mrow); err != nil {
				return true, err
			}
			if perr == nil {
				if err := add(model.Header, hk); err != nil {
					return true, err
				}
				if err := add(model.Body, bk); err != nil {
					return true, err
				}
			}
		}
	}
	if hasReceived {
		if err := add(model.Received, received); err != nil {
			return true, err
		}
	}
	return true, nil
}

// packer sends rows with their contents as rows answers (wire.KindRows)
// as they come: as many rows a message as fit in one frame, so a mail of
// a few KiB, or a listing's receive row, costs a fraction of a frame, an
// encryption and a hand-over in the client instead of one of each per
// row. A row too large for a frame goes in a message of its own,
// streamed over frames like an event. The caller flushes the last rows
// and ends the stream; close gives the buffer back.
type packer struct {
	c   *conn
	id  uint32
	v   *store.View
	max int // bytes of rows a message holds
	// buf is the message being filled: packOverhead bytes of room for
	// its header (the count is known only when it is full), then its n
	// rows.
	buf    []byte
	n      int
	hdr    []byte // one row's header
	pooled *[]byte
}

// packOverhead is what a rows answer adds to its rows: the kind byte and
// the count (at most wire.MaxPackedRows, two varint bytes).
const packOverhead = 1 + 2

func (c *conn) newPacker(id uint32, v *store.View) *packer {
	p := &packer{c: c, id: id, v: v, max: c.wc.MaxFrameData() - packOverhead}
	p.pooled, _ = c.s.msgBufs.Get().(*[]byte)
	if p.pooled == nil {
		p.pooled = new([]byte)
	}
	p.buf = append((*p.pooled)[:0], make([]byte, packOverhead)...)
	return p
}

// add packs row, with its content if parts has withContent (read now, so
// the row may alias the view's memory), sending the message before if row
// does not fit in it.
func (p *packer) add(row store.Row, parts rowParts) error {
	wr := wireRow(row)
	wr.HasContent = parts&withContent != 0
	p.hdr = wire.AppendRowHeader(p.hdr[:0], &wr)
	size := uint64(len(p.hdr))
	if wr.HasContent {
		size += row.Size
	}
	if startsMessage(p.n, uint64(len(p.buf)-packOverhead), size, p.max) {
		if err := p.flush(); err != nil {
			return err
		}
	}
	if size > uint64(p.max) { // alone: p.n is 0 here
		m := p.c.newMessage(p.id)
		m.buf = wire.AppendRowsHeader(m.buf, 1)
		m.Write(p.hdr)
		if err := writeContent(m, p.v, row); err != nil {
			return m.cut(err)
		}
		return m.finish()
	}
	p.buf = append(p.buf, p.hdr...)
	if wr.HasContent {
		if err := writeContent((*packBuf)(&p.buf), p.v, row); err != nil {
			return err
		}
	}
	p.n++
	return nil
}

// startsMessage reports whether a row of size bytes (header and content)
// must start a new message after one of n rows in used bytes: it does
// not fit in max bytes, or the message has wire.MaxPackedRows rows. A row
// larger than max goes in a message of its own. It is pure, for a table
// test.
func startsMessage(n int, used, size uint64, max int) bool {
	return n > 0 && (used+size > uint64(max) || n == wire.MaxPackedRows)
}

// flush sends the rows packed so far, if any, as one message.
func (p *packer) flush() error {
	if p.n == 0 {
		return nil
	}
	var h [packOverhead]byte
	head := wire.AppendRowsHeader(h[:0], p.n)
	start := packOverhead - len(head)
	copy(p.buf[start:], head)
	err := p.c.sendMessage(p.id, p.buf[start:])
	p.buf, p.n = p.buf[:packOverhead], 0
	return err
}

// close gives the packer's buffer back to the server's pool.
func (p *packer) close() {
	if cap(p.buf) <= maxPooledMessage {
		*p.pooled = p.buf[:0]
		p.c.s.msgBufs.Put(p.pooled)
	}
	p.buf = nil
}

// packBuf appends what is written to it (a content, to a packer's buffer).
type packBuf []byte

func (b *packBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// smallContent returns the content of a small row (a receive or mail row's
// pair of keys): the one read with it, or from the store.
func smallContent(v *store.View, row store.Row) ([]byte, error) {
	if row.Inline != nil {
		return row.Inline, nil
	}
	var b []byte
	err := v.Chunks(row, func(c []byte) error { b = append(b, c...); return nil })
	return b, err
}

// sendEvents sends rows (what waited for a watch: often a commit group's
// changes) as watch events, in one write(2) when the buffer allows.
func (c *conn) sendEvents(id uint32, rows []store.Row) error {
	if len(rows) == 0 {
		return nil
	}
	release := c.wc.Hold()
	defer release()
	for _, row := range rows {
		if err := c.sendEvent(id, nil, row, 0); err != nil {
			return err
		}
	}
	return nil
}
