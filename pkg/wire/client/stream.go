package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// Stream is an open streaming request (watch, changes, dump, scan). Next
// returns rows until io.EOF (the stream ended normally) or an error. A
// stream is not resumed after a lost connection: the caller opens a new one
// (from its cursor). Callers must call Close.
type Stream struct {
	call *call
	op   wire.Op
	done bool
	rows []wire.Row // the rest of a rows answer (wire.KindRows), handed out first
}

// stream opens the stream request req on a connection for use u:
// usePaced for a Stream handed to the caller, useDrained for one the
// Client reads to its end itself (see Client).
func (c *Client) stream(ctx context.Context, req *wire.Request, u use) (*Stream, error) {
	return c.streamHandled(ctx, req, u, nil)
}

// streamHandled is stream with the call's handle (see call).
func (c *Client) streamHandled(ctx context.Context, req *wire.Request, u use, handle func([]byte) bool) (*Stream, error) {
	msg, err := wire.AppendRequest(make([]byte, 0, req.SizeHint()), req)
	if err != nil {
		return nil, err
	}
	s, release, err := c.streamConn(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("open %s stream: %w", req.Op, err)
	}
	cl, err := s.startHandled(ctx, c.newID, [][]byte{msg}, c.cfg.StreamBuffer, release, handle)
	if err != nil {
		return nil, fmt.Errorf("open %s stream: %w", req.Op, err)
	}
	return &Stream{call: cl, op: req.Op}, nil
}

// Next returns the next row, io.EOF at the normal end of the stream, or an
// error (a *wire.Error from dbd, ErrConnLost, or ctx's error).
func (st *Stream) Next(ctx context.Context) (*wire.Row, error) {
	if len(st.rows) > 0 {
		r := &st.rows[0]
		st.rows = st.rows[1:]
		return r, nil
	}
	rows, row, err := st.nextMessage(ctx, nil)
	if err != nil || row != nil {
		return row, err
	}
	st.rows = rows[1:]
	return &rows[0], nil
}

// nextMessage decodes the next answer message: several rows (a rows
// answer), appended to into, or one row, io.EOF at the normal end of the
// stream, or an error. It returns into, with the rows of a rows answer
// appended. It must not be mixed with a Next that left rows of a message
// unread.
func (st *Stream) nextMessage(ctx context.Context, into []wire.Row) ([]wire.Row, *wire.Row, error) {
	if st.done {
		return into, nil, io.EOF
	}
	m, err := st.call.next(ctx)
	if err != nil {
		return into, nil, err
	}
	rows, res, err := wire.DecodeAnswerTo(into, st.op, m)
	if errors.Is(err, wire.ErrEndOfStream) {
		st.done = true
		st.call.finish()
		return into, nil, io.EOF
	}
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			st.done = true
			st.call.finish()
		}
		return into, nil, err
	}
	if res.NotFound {
		// The row a stream starts from does not exist (mail): the
		// answer ends the request.
		st.done = true
		st.call.finish()
		return into, nil, ErrNotFound
	}
	if len(rows) > len(into) {
		return rows, nil, nil
	}
	if res.Row == nil {
		return into, nil, fmt.Errorf("%w: %s stream sent a result instead of a row", wire.ErrMalformed, st.op)
	}
	return into, res.Row, nil
}

// Close ends the stream, telling dbd to stop if it has not ended.
func (st *Stream) Close() {
	if st.done {
		return
	}
	st.done = true
	st.call.close()
}

// Watch subscribes to changes of rows of table t (only keys, if given).
// With initial, the current state of each listed key that exists comes
// first. When Watch returns, the subscription is live: no later change is
// missed. Events carry state, not content. If the watcher falls far
// behind, dbd ends the stream with an unavailable error; read the rows
// again and resubscribe.
func (c *Client) Watch(ctx context.Context, t model.Table, keys []model.Key, initial bool) (*Stream, error) {
	return c.watch(ctx, &wire.Request{Op: wire.OpWatch, Table: t, Keys: keys, Flag: initial})
}

// WatchChildren subscribes to the rows of table t whose parent is parent
// (see model.ParentOf): every insert or change of, say, a mailbox's
// receive rows, as events without content. Like Watch, the subscription is
// live when it returns; List after that misses nothing.
func (c *Client) WatchChildren(ctx context.Context, t model.Table, parent model.Key) (*Stream, error) {
	return c.watch(ctx, &wire.Request{Op: wire.OpWatch, Table: t, Parent: &parent})
}

// WatchWhere is Watch of the whole table t (no keys, no initial rows)
// with only the events whose row meets cond: a watcher that needs some
// changes only saves the others' encryption and hand-over on both sides.
// A dbd older than conditions refuses it as bad-request; the Client then
// watches without the condition, and keeps doing so until it opens a new
// connection, so the caller must still check each row itself.
func (c *Client) WatchWhere(ctx context.Context, t model.Table, cond wire.WatchCond) (*Stream, error) {
	return c.watch(ctx, &wire.Request{Op: wire.OpWatch, Table: t, Cond: &cond})
}

// WatchWhereFunc is WatchWhere with each event handed to f in the
// connection's read loop, as it arrives, rather than queued for Next: a
// watcher that only hands events on (smtpd's, to the transactions
// waiting for a row) saves a goroutine hand-over per event. f must be
// quick and must not block or use the Client; the row is f's. Next then
// returns what f was not given: the end of the stream or its error. As it
// never leaves the connection's reader waiting, the stream shares the
// connection of one-shot requests (see Client): smtpd needs no other.
func (c *Client) WatchWhereFunc(ctx context.Context, t model.Table, cond wire.WatchCond, f func(*wire.Row)) (*Stream, error) {
	return c.watchHandled(ctx, &wire.Request{Op: wire.OpWatch, Table: t, Cond: &cond}, func() func([]byte) bool {
		subscribed := false
		return func(msg []byte) bool {
			if !subscribed {
				subscribed = true // the subscription's answer is watch's
				return false
			}
			rows, res, err := wire.DecodeAnswerTo(nil, wire.OpWatch, msg)
			switch {
			case err != nil || res.NotFound:
				return false // the end, or an error: for Next
			case len(rows) > 0:
				for i := range rows {
					f(&rows[i])
				}
			case res.Row != nil:
				f(res.Row)
			default:
				return false
			}
			return true
		}
	})
}

func (c *Client) watch(ctx context.Context, req *wire.Request) (*Stream, error) {
	return c.watchHandled(ctx, req, nil)
}

// watchHandled is watch whose calls' handles newHandle makes (nil: none,
// the events are read with Next).
func (c *Client) watchHandled(ctx context.Context, req *wire.Request, newHandle func() func([]byte) bool) (*Stream, error) {
	t := req.Table
	if req.Cond != nil && c.noWatchCond.Load() {
		req.Cond = nil
	}
	u := usePaced
	if newHandle != nil {
		u = useDrained
	}
	for attempt := 1; ; attempt++ {
		var handle func([]byte) bool
		if newHandle != nil {
			handle = newHandle()
		}
		st, err := c.streamHandled(ctx, req, u, handle)
		if err != nil {
			return nil, err
		}
		m, err := st.call.next(ctx)
		if err == nil {
			_, err = wire.DecodeAnswer(wire.OpPing, m)
		}
		if err == nil {
			return st, nil
		}
		st.Close()
		if req.Cond != nil && isCode(err, wire.CodeBadRequest) {
			c.noWatchCond.Store(true)
			req.Cond = nil
			continue
		}
		if !c.refusedBusy(st, err, attempt) {
			return nil, fmt.Errorf("watch %s: %w", t, err)
		}
	}
}

// Changes streams every row changed after cursor, with content, in change
// order (replication role). Each row's Stamp is the cursor to resume from.
// With follow, the stream then waits for and sends new changes as dbd
// commits them. With exclude (a merge cursor name), rows whose state came
// from a merge under that cursor exactly as sent come without content
// (HasContent false): the site that sent them has it.
func (c *Client) Changes(ctx context.Context, cursor uint64, follow bool, exclude string) (*Stream, error) {
	return c.stream(ctx, &wire.Request{Op: wire.OpChanges, Value: cursor, Flag: follow, Name: exclude}, usePaced)
}

// Dump streams every row, sorted by table and key, with the SHA-256 of its
// content in Digest (not the content).
func (c *Client) Dump(ctx context.Context) (*Stream, error) {
	return c.stream(ctx, &wire.Request{Op: wire.OpDump}, usePaced)
}

// ScanKeys returns the keys of up to limit of the newest rows of table t,
// newest first: Scan, collected.
func (c *Client) ScanKeys(ctx context.Context, t model.Table, limit int) ([]model.Key, error) {
	rows, err := c.collect(ctx, &wire.Request{Op: wire.OpScan, Table: t, Value: uint64(max(limit, 0))}, 0)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", t, err)
	}
	keys := make([]model.Key, len(rows))
	for i := range rows {
		keys[i] = rows[i].Key
	}
	return keys, nil
}

// ErrScanBound is returned, wrapped, by ScanAll and ScanKeysAll when the
// table has more rows than the caller's bound: the rows up to the bound
// were handed out, the older ones not. Use errors.Is(err, ErrScanBound).
var ErrScanBound = errors.New("client: table has more rows than the scan's bound")

// ErrScanTooOld is returned, wrapped with dbd's bad-request, by ScanAll
// and ScanKeysAll when dbd refuses a scan's cursor (a dbd from before
// 2026-12-03) and the table has more rows than one scan answers: the
// newest 10000 were handed out, the older ones not. Use
// errors.Is(err, ErrScanTooOld).
var ErrScanTooOld = errors.New("client: dbd too old to page a scan")

// scanPage is the most rows dbd answers one scan with (docs/wire.md
// §5.8): a page of fewer rows than asked for is the last.
const scanPage = 10000

// ScanAll calls fn with every row of table t, newest first (highest
// local row number first), without content, reading them a page of up
// to 10000 rows at a time: each page asks for the rows numbered below
// the smallest of the previous one (wire.Request.Before). It hands out
// at most bound rows; a table with more ends in an error wrapping
// ErrScanBound after the newest bound. An error from fn ends it and is
// returned as it is. A row inserted during the scan may be missed (it
// is numbered above the first page); a watch opened first misses none.
//
// A dbd older than the cursor refuses the second page as bad-request:
// ScanAll then fails with ErrScanTooOld rather than end as if the newest
// 10000 rows were all.
func (c *Client) ScanAll(ctx context.Context, t model.Table, bound int, fn func(*wire.Row) error) error {
	var before uint64 // 0: from the newest row
	for seen := 0; ; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scan %s: %w", t, err)
		}
		// One more than the bound leaves, to tell a table of exactly
		// bound rows from a larger one (without overflowing at
		// math.MaxInt).
		want := scanPage
		if left := max(bound, 0) - seen; left < scanPage {
			want = left + 1
		}
		req := &wire.Request{Op: wire.OpScan, Table: t, Value: uint64(want), Before: before}
		rows, err := c.collect(ctx, req, 0)
		if err != nil {
			if before > 0 && isCode(err, wire.CodeBadRequest) {
				return fmt.Errorf("scan %s: %w (it answers at most the newest %d rows, and the table has more): %w", t, ErrScanTooOld, scanPage, err)
			}
			return fmt.Errorf("scan %s: %w", t, err)
		}
		for i := range rows {
			// Each row below the one before: a page that does not
			// move on would be asked for again and again.
			if no := rows[i].RowNo; no == 0 || before > 0 && no >= before {
				return fmt.Errorf("scan %s: %w: row number %d after %d", t, wire.ErrMalformed, no, before)
			}
			if seen >= bound {
				return fmt.Errorf("scan %s: %w (%d rows)", t, ErrScanBound, bound)
			}
			if err := fn(&rows[i]); err != nil {
				return err
			}
			seen++
			before = rows[i].RowNo
		}
		if len(rows) < want {
			return nil
		}
	}
}

// ScanKeysAll returns the keys of every row of table t, newest first:
// ScanAll, collected. A table of more than bound rows is an error wrapping
// ErrScanBound.
func (c *Client) ScanKeysAll(ctx context.Context, t model.Table, bound int) ([]model.Key, error) {
	var keys []model.Key
	err := c.ScanAll(ctx, t, bound, func(r *wire.Row) error {
		keys = append(keys, r.Key)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// collect runs the stream request req to its end and returns its rows.
// want is how many rows to make room for at once (0: grow as they come).
func (c *Client) collect(ctx context.Context, req *wire.Request, want int) ([]wire.Row, error) {
	var rows []wire.Row
	if want > 0 {
		rows = make([]wire.Row, 0, want)
	}
	return c.collectFrames(ctx, req, rows, nil)
}

// collectFrames is collect into the memory of the list into (its length
// is ignored) that, with a non-nil frames, adds to it the pool buffers
// the rows lie in (see MailsRowsPooled); on an error they are given back
// at once.
func (c *Client) collectFrames(ctx context.Context, req *wire.Request, into []wire.Row, frames *[]*[]byte) ([]wire.Row, error) {
	for attempt := 1; ; attempt++ {
		// Read to its end at once, by readAll alone: it shares the
		// connection of one-shot requests (see Client).
		st, err := c.stream(ctx, req, useDrained)
		if err != nil {
			return nil, err
		}
		st.call.keepFrames = frames != nil
		rows, err := readAll(ctx, st, into[:0])
		if err != nil {
			c.giveBack(st.call.frames)
		} else if frames != nil {
			*frames = append(*frames, st.call.frames...)
		}
		st.call.frames = nil
		if len(rows) == 0 && c.refusedBusy(st, err, attempt) {
			continue
		}
		return rows, err
	}
}

// giveBack puts frame buffers back in the pool.
func (c *Client) giveBack(frames []*[]byte) {
	for _, f := range frames {
		c.frames.put(f)
	}
}

// readAll reads st to its end and appends its rows to rows, a message's
// rows at a time, decoded into rows: a mails answer packs dozens of rows
// in a message, and copying them one by one into an ever growing slice
// cost as many bytes as the mails themselves.
func readAll(ctx context.Context, st *Stream, rows []wire.Row) ([]wire.Row, error) {
	defer st.Close()
	for {
		var row *wire.Row
		var err error
		rows, row, err = st.nextMessage(ctx, rows)
		switch {
		case errors.Is(err, io.EOF):
			return rows, nil
		case err != nil:
			return nil, err
		case row != nil:
			rows = append(rows, *row)
		}
	}
}

// busyRetries bounds the connections a stream tries when dbd refuses it
// as busy.
const busyRetries = 3

// refusedBusy reports whether st was refused by dbd because its
// connection had no stream slot free — the client counts streams as ended
// when their end arrives, dbd a moment later, when the stream's goroutine
// is done — and the stream should be opened again, elsewhere: it keeps
// new streams off that connection for a moment.
func (c *Client) refusedBusy(st *Stream, err error, attempt int) bool {
	var we *wire.Error
	if attempt >= busyRetries || !errors.As(err, &we) || we.Code != wire.CodeBusy {
		return false
	}
	c.mu.Lock()
	st.call.s.busyUntil = time.Now().Add(busyPause)
	c.mu.Unlock()
	return true
}

// busyPause is how long a connection that refused a stream as busy gets no
// new streams.
const busyPause = 100 * time.Millisecond

// Scan streams up to limit of the newest rows of table t (highest local row
// number first), without content.
func (c *Client) Scan(ctx context.Context, t model.Table, limit int) (*Stream, error) {
	return c.stream(ctx, &wire.Request{Op: wire.OpScan, Table: t, Value: uint64(max(limit, 0))}, usePaced)
}

// List returns up to limit (at most 10000) rows of table t whose parent is
// parent and whose local row number is above after, in increasing row
// number order, with content: a mailbox's receive rows as they arrived at
// this site. Page by passing the last row's RowNo as after.
//
// It asks for packed rows (wire.ListPacked: several rows a message) and,
// like MailsRows, asks again without the flag when a dbd older than it
// refuses the request as bad-request, until it opens a new connection.
func (c *Client) List(ctx context.Context, t model.Table, parent model.Key, after uint64, limit int) ([]wire.Row, error) {
	req := &wire.Request{Op: wire.OpList, Table: t, Parent: &parent, After: after, Value: uint64(max(limit, 0)), Flag: !c.unpackedList.Load()}
	rows, err := c.collect(ctx, req, 0)
	if req.Flag && isCode(err, wire.CodeBadRequest) {
		c.unpackedList.Store(true)
		req.Flag = false
		rows, err = c.collect(ctx, req, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", t, parent, err)
	}
	return rows, nil
}

// MailRows returns, from one snapshot, the rows that make the mail of
// receive row k, with content: the receive row, then (those present) its
// mail, header and body rows and the acknowledged delivery's received row.
// It is ErrNotFound if the receive row does not exist.
func (c *Client) MailRows(ctx context.Context, k model.Key) ([]wire.Row, error) {
	rows, err := c.collect(ctx, &wire.Request{Op: wire.OpMail, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}}, wire.MailRows)
	if err != nil {
		return nil, fmt.Errorf("mail of %s: %w", k, err)
	}
	return rows, nil
}

// MailsRows is MailRows for up to wire.MaxMailsKeys receive rows, from one
// snapshot and in one request: the rows of each mail, by its receive key.
// A key without a receive row has no entry. With a budget (bytes; 0: none)
// dbd stops after the mail whose contents reach it, so the keys after the
// last one answered may not have been looked at: ask for them again.
//
// It asks for packed rows (wire.MailsPacked: several rows a message); a dbd
// that does not know the flag refuses the request as bad-request, and the
// Client then asks without it, and keeps doing so until it opens a new
// connection (which may reach an upgraded dbd).
func (c *Client) MailsRows(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, error) {
	byKey, _, err := c.mailsRows(ctx, keys, budget, false, make([]wire.Row, 0, wire.MailRows*len(keys)), nil)
	return byKey, err
}

// MailsRowsPooled is MailsRows whose rows lie in memory the caller gives
// back by calling release, once, when it no longer uses any row nor
// anything sliced from one (a mail joined from their contents is a copy):
// the Client decrypts later answers into that memory. Never calling
// release is safe, only slower; calling it early corrupts the rows of
// later answers. release is not nil, even with an error.
func (c *Client) MailsRowsPooled(ctx context.Context, keys []model.Key, budget uint64) (byKey map[model.Key][]wire.Row, release func(), err error) {
	return c.mailsRowsPooled(ctx, keys, budget, false)
}

// MailsHeadsPooled is MailsRowsPooled that asks dbd to send each body
// row without its content, with its size (wire.MailsNoBody): a reader of
// headers and sizes. The budget counts the contents sent. A dbd older
// than the flag refuses it as bad-request; the Client then asks for the
// whole rows (a body row then has its content, and the same size), and
// keeps doing so until it opens a new connection.
func (c *Client) MailsHeadsPooled(ctx context.Context, keys []model.Key, budget uint64) (byKey map[model.Key][]wire.Row, release func(), err error) {
	return c.mailsRowsPooled(ctx, keys, budget, true)
}

func (c *Client) mailsRowsPooled(ctx context.Context, keys []model.Key, budget uint64, noBody bool) (byKey map[model.Key][]wire.Row, release func(), err error) {
	var frames []*[]byte
	byKey, rows, err := c.mailsRows(ctx, keys, budget, noBody, c.rowLists.get(wire.MailRows*len(keys)), &frames)
	return byKey, func() {
		c.giveBack(frames)
		c.rowLists.put(rows)
		frames, rows = nil, nil
	}, err
}

// mailsRows is MailsRows into the memory of the list into (see
// collectFrames); it also returns the list of all rows. noBody asks for
// body rows without content where dbd knows how.
func (c *Client) mailsRows(ctx context.Context, keys []model.Key, budget uint64, noBody bool, into []wire.Row, frames *[]*[]byte) (map[model.Key][]wire.Row, []wire.Row, error) {
	req := &wire.Request{Op: wire.OpMails, Table: model.Receive, Keys: keys, Value: budget, Flag: !c.unpacked.Load()}
	// A dbd that does not pack is older than MailsNoBody too.
	req.NoBody = noBody && req.Flag && !c.bodies.Load()
	rows, err := c.collectFrames(ctx, req, into, frames)
	if req.NoBody && isCode(err, wire.CodeBadRequest) {
		c.bodies.Store(true)
		req.NoBody = false
		rows, err = c.collectFrames(ctx, req, into, frames)
	}
	if req.Flag && isCode(err, wire.CodeBadRequest) {
		c.unpacked.Store(true)
		req.Flag = false
		rows, err = c.collectFrames(ctx, req, into, frames)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mails of %d receive rows: %w", len(keys), err)
	}
	if len(rows) > 0 && rows[0].Table != model.Receive {
		return nil, nil, fmt.Errorf("%w: mails answer starts with a %s row", wire.ErrMalformed, rows[0].Table)
	}
	// A mail's rows come together, its receive row first: each mail's
	// list is a window on rows, not a copy. A receive row sent twice
	// (dbd does not) keeps the later window.
	out := make(map[model.Key][]wire.Row, len(keys))
	for start := 0; start < len(rows); {
		end := start + 1
		for end < len(rows) && rows[end].Table != model.Receive {
			end++
		}
		out[rows[start].Key] = rows[start:end:end]
		start = end
	}
	return out, rows, nil
}

// rowList holds lists of rows for MailsRowsPooled. It is safe for
// concurrent use.
type rowList struct{ p sync.Pool }

// get returns an empty list with room for n rows.
func (rl *rowList) get(n int) []wire.Row {
	if l, ok := rl.p.Get().(*[]wire.Row); ok && cap(*l) >= n {
		return (*l)[:0]
	}
	return make([]wire.Row, 0, n)
}

// put gives back rows's memory, emptied (its rows held contents and
// states); nothing may use it after. A list larger than two requests'
// worth is left to the collector.
func (rl *rowList) put(rows []wire.Row) {
	if rows == nil || cap(rows) > 2*wire.MailRows*wire.MaxMailsKeys {
		return
	}
	clear(rows[:cap(rows)])
	rows = rows[:0]
	rl.p.Put(&rows)
}

func isCode(err error, code wire.Code) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code == code
}

// Resubscribe runs follow (a watch or changes loop) until ctx ends. A
// stream ends when dbd restarts, the connection breaks or the watcher falls
// behind; after each such end it calls ended with the error and, after
// pause, follow again, which must read the current rows anew (a watch
// misses nothing only from when it is live).
func Resubscribe(ctx context.Context, pause time.Duration, follow func(context.Context) error, ended func(error)) {
	for ctx.Err() == nil {
		err := follow(ctx)
		if ctx.Err() != nil {
			return
		}
		ended(err)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}
