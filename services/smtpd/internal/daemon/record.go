package daemon

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
	"github.com/twinmx/twinmx/services/smtpd/internal/replay"
	"github.com/twinmx/twinmx/services/smtpd/internal/session"
)

// Bounds of the recorder's queue and of one batch it writes.
const (
	recordQueue      = 4096     // records waiting; beyond it a record is dropped (and counted)
	recordQueueBytes = 64 << 20 // content bytes waiting, likewise
	recordBatchMax   = 64       // records in one dbd batch
	recordBatchBytes = 1 << 20  // content bytes in one dbd batch
)

// recorder stores every connection's transcript as a capture row when the
// connection closes — sessions that never reached EHLO included, so early
// talkers and scanners leave a record too (SPEC §5: record every attempt).
//
// Records go through a queue to one writer that sends whatever has queued
// up as one dbd batch: under load one request for many connections
// instead of one each (a third of smtpd's dbd requests), with no added
// wait when idle. A record is lost only if smtpd dies before the batch is
// written, as it was when each connection wrote its own.
type recorder struct {
	db interface {
		Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
	}
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	m       *metrics.Metrics
	queue   chan []wire.Request
	// queued is the content bytes in queue and in the batch being
	// written. A count bound alone let a dbd outage hold 4096 full
	// captures (1 GiB at the default --capture-max): the mails of an
	// outage are not stored, so their captures keep their DATA.
	queued atomic.Int64
	// watching counts connections whose record is not queued yet; close
	// waits for them before it closes the queue.
	watching sync.WaitGroup
	// mu and closed guard the queue against note after close: a
	// session cut at shutdown may still finish its bookkeeping.
	mu     sync.Mutex
	closed bool
}

func newRecorder(db interface {
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}, prefix string, timeout time.Duration, log *slog.Logger, m *metrics.Metrics) *recorder {
	return &recorder{db: db, prefix: prefix, timeout: timeout, log: log, m: m, queue: make(chan []wire.Request, recordQueue)}
}

// listener wraps guard's listener so each accepted connection is recorded
// and tracked in open until it closes.
type listener struct {
	*guard.Listener
	rec  *recorder
	open *openConns
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if gc, ok := c.(*guard.Conn); ok {
		start := time.Now()
		l.rec.watching.Add(1)
		l.open.add(gc)
		gc.AfterClose(func() {
			defer l.rec.watching.Done()
			l.open.remove(gc)
			l.rec.add(gc, start)
		})
	}
	return c, nil
}

// openConns is the set of accepted connections not closed yet. Shutdown
// cuts them when the grace period ends: go-smtp cannot, since its Close
// does nothing once Shutdown has begun. Safe for concurrent use.
type openConns struct {
	mu sync.Mutex
	m  map[*guard.Conn]struct{}
}

func (o *openConns) add(c *guard.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[*guard.Conn]struct{})
	}
	o.m[c] = struct{}{}
}

func (o *openConns) remove(c *guard.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, c)
}

// closeAll closes every open connection and returns how many there were.
// Closing runs each one's AfterClose, which calls remove: the lock is not
// held meanwhile.
func (o *openConns) closeAll() int {
	o.mu.Lock()
	cs := make([]*guard.Conn, 0, len(o.m))
	for c := range o.m {
		cs = append(cs, c)
	}
	o.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return len(cs)
}

// add queues the records of a closed connection: an early talker's
// throw-in, and the capture.
func (r *recorder) add(c *guard.Conn, start time.Time) {
	id := session.ID(r.prefix, c.ID())
	client := c.RemoteAddr().String()
	var reqs []wire.Request
	if c.EarlyTalker() {
		r.m.Rejections.WithLabelValues("early-talker").Inc()
		ti := model.Attempt{Session: id, Time: start, Client: client, EarlyTalker: true}.Content()
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.ThrowIn, Content: ti},
			wire.Request{Op: wire.OpSet, Table: model.ThrowIn, Ref: wire.Ref{Content: ti}, Name: "reply", Value: 554})
	}
	meta := replay.MetaLine(id, client, start)
	if content := c.TakeCapture([]byte(meta)); len(content) > len(meta) {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Capture, Content: content})
	}
	if len(reqs) == 0 {
		return
	}
	if !r.enqueue(reqs) {
		r.m.DBErrors.WithLabelValues("capture").Inc()
		r.log.Warn("record queue full (dbd slow or down); capture dropped", "session", id)
	}
}

// enqueue queues reqs unless the queue is full in records or in bytes.
// A record larger than the byte bound (a --capture-max above it) still
// goes alone into an empty queue.
// REQUIRES: the queue is not closed.
func (r *recorder) enqueue(reqs []wire.Request) bool {
	n := int64(contentBytes(reqs))
	if total := r.queued.Add(n); total > recordQueueBytes && total != n {
		r.queued.Add(-n)
		return false
	}
	select {
	case r.queue <- reqs:
		return true
	default:
		r.queued.Add(-n)
		return false
	}
}

// note queues a session's bookkeeping writes (session.Config.Record):
// they go in the next batch with the captures.
func (r *recorder) note(reqs []wire.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.m.DBErrors.WithLabelValues("throw-in").Inc()
		return
	}
	if !r.enqueue(reqs) {
		r.m.DBErrors.WithLabelValues("throw-in").Inc()
		r.log.Warn("record queue full (dbd slow or down); throw-in field dropped")
	}
}

// run writes queued records until the queue is closed and drained, or
// ctx ends.
func (r *recorder) run(ctx context.Context) {
	for {
		var reqs []wire.Request
		select {
		case <-ctx.Done():
			return
		case q, ok := <-r.queue:
			if !ok {
				return
			}
			reqs = q
		}
		batch, n, size := reqs, 1, contentBytes(reqs)
	gather:
		for n < recordBatchMax && size < recordBatchBytes {
			select {
			case more, ok := <-r.queue:
				if !ok {
					break gather
				}
				batch = append(batch, more...)
				n++
				size += contentBytes(more)
			default:
				break gather
			}
		}
		r.write(ctx, batch, n)
		r.queued.Add(-int64(size))
	}
}

func (r *recorder) write(ctx context.Context, batch []wire.Request, records int) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if _, err := r.db.Batch(ctx, batch); err != nil {
		r.m.DBErrors.WithLabelValues("capture").Add(float64(records))
		r.log.Warn("storing connection records failed", "records", records, "err", err)
	}
}

// close waits until every accepted connection's record is queued, then
// closes the queue: run returns once it has written the rest. Call it
// after the server has stopped accepting.
func (r *recorder) close() {
	r.watching.Wait()
	r.mu.Lock()
	r.closed = true
	close(r.queue)
	r.mu.Unlock()
}

func contentBytes(reqs []wire.Request) int {
	n := 0
	for i := range reqs {
		n += len(reqs[i].Content)
	}
	return n
}
