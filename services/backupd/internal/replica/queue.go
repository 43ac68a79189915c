package replica

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// queue holds the rows a pump's reader took from the changes stream and its
// merger has not merged yet, bounded in bytes (rowCost) so large bodies
// cannot pile up, nor a long backlog of rows without content. One reader
// puts, one merger takes.
type queue struct {
	max int

	mu    sync.Mutex
	rows  []*wire.Row
	bytes int // sum of rowCost of rows

	// Puts that had to wait for room, in all and now. While one waits,
	// the reader leaves the changes stream unread, and so every answer
	// on the stream's connection waits too (see heldSince).
	waits, waiting int

	notEmpty chan struct{} // cap 1: rows were added
	notFull  chan struct{} // cap 1: rows were taken
}

func newQueue(maxBytes int) *queue {
	return &queue{max: maxBytes, notEmpty: make(chan struct{}, 1), notFull: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// rowOverhead is what a queued row costs besides its content: the
// wire.Row, its key and its state's maps, roughly. Before 2026-12-03 the
// bound counted content only, and rows without content (the echoes of a
// peer's merges, sent excluded; a restored site's whole backlog of them)
// cost nothing: a source far ahead of a slow destination filled backupd's
// memory with millions of them.
const rowOverhead = 512

// rowCost is what r counts against the queue's bound.
func rowCost(r *wire.Row) int { return len(r.Content) + rowOverhead }

// put appends r, waiting while the queue is over its byte bound. A row
// larger than the bound is accepted when the queue is empty.
func (q *queue) put(ctx context.Context, r *wire.Row) error {
	n := rowCost(r)
	waited := false
	defer func() {
		if waited {
			q.mu.Lock()
			q.waiting--
			q.mu.Unlock()
		}
	}()
	for {
		q.mu.Lock()
		if q.bytes == 0 || q.bytes+n <= q.max {
			q.rows = append(q.rows, r)
			q.bytes += n
			q.mu.Unlock()
			signal(q.notEmpty)
			return nil
		}
		if !waited {
			waited = true
			q.waits++
			q.waiting++
		}
		q.mu.Unlock()
		select {
		case <-q.notFull:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// held returns a count of the puts that have waited for room so far.
func (q *queue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waits
}

// heldSince reports whether a put has waited for room at any time since
// held returned n.
func (q *queue) heldSince(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting > 0 || q.waits != n
}

// take removes and returns the oldest rows, at most maxRows of them and at
// most maxBytes of content (but always at least one row if any is queued):
// the bounds of one merge.
func (q *queue) take(maxRows, maxBytes int) []*wire.Row {
	q.mu.Lock()
	n, b, cost := 0, 0, 0
	for n < len(q.rows) && n < maxRows {
		c := len(q.rows[n].Content)
		if n > 0 && b+c > maxBytes {
			break
		}
		b += c
		cost += rowCost(q.rows[n])
		n++
	}
	out := make([]*wire.Row, n)
	copy(out, q.rows[:n])
	clear(q.rows[:n])
	q.rows = q.rows[n:]
	q.bytes -= cost
	q.mu.Unlock()
	if n > 0 {
		signal(q.notFull)
	}
	return out
}

// tracker is one pump's record of the receive rows it merged whose
// backed-up mark the marker has not settled yet. It decides the cursor the
// pump stores: never past an unsettled receive row, so that after a crash
// the pump streams that row again and the marker sees it again. Safe for
// concurrent use (the pump adds, the marker settles).
type tracker struct {
	mu       sync.Mutex
	merged   uint64               // highest source stamp merged in this session
	pending  map[model.Key]uint64 // receive key -> source stamp
	overflow uint64               // lowest stamp of an unsettled receive the marker could not take (0: none)
	roomed   bool                 // the marker has had room since it could not take one (room)
	advanced chan struct{}        // cap 1: the floor may have risen
}

func newTracker() *tracker {
	return &tracker{pending: map[model.Key]uint64{}, advanced: make(chan struct{}, 1)}
}

// reset starts a session at the stored cursor. Pending rows stay: the
// marker still works on them.
func (t *tracker) reset(cursor uint64) {
	t.mu.Lock()
	t.merged, t.overflow, t.roomed = cursor, 0, false
	t.mu.Unlock()
}

// floorLocked is the highest stamp below which everything is merged and
// settled. REQUIRES: t.mu held.
func (t *tracker) floorLocked() uint64 {
	return t.belowLocked(t.merged)
}

// belowLocked lowers high below every unsettled receive row.
// REQUIRES: t.mu held.
func (t *tracker) belowLocked(high uint64) uint64 {
	f := high
	for _, s := range t.pending {
		f = min(f, s-1)
	}
	if t.overflow != 0 {
		f = min(f, t.overflow-1)
	}
	return f
}

// cursorFor is the cursor to store with a merge that brings everything up
// to high: high, lowered below every unsettled receive row.
func (t *tracker) cursorFor(high uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.belowLocked(max(t.merged, high))
}

func (t *tracker) floor() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.floorLocked()
}

// merged records that everything up to stamp high is merged and that the
// receive rows recv now wait for their mark.
func (t *tracker) mergedUpTo(high uint64, recv []pendingRecv) {
	t.mu.Lock()
	t.merged = max(t.merged, high)
	for _, r := range recv {
		t.pending[r.key] = r.stamp
	}
	t.mu.Unlock()
}

// settle forgets receive row k: its mark is set (or was).
func (t *tracker) settle(k model.Key) {
	t.mu.Lock()
	delete(t.pending, k)
	t.mu.Unlock()
	signal(t.advanced)
}

// untracked records a receive row the marker had no room for: the cursor
// stays below it, so a restart brings it back.
func (t *tracker) untracked(k model.Key, stamp uint64) {
	t.mu.Lock()
	delete(t.pending, k)
	if t.overflow == 0 || stamp < t.overflow {
		t.overflow = stamp
	}
	t.mu.Unlock()
}

// room records that the marker, which could not take a receive row of
// this pump, has room again.
func (t *tracker) room() {
	t.mu.Lock()
	t.roomed = true
	t.mu.Unlock()
	signal(t.advanced)
}

// restream reports whether the session should end and the next one stream
// again from the stored cursor: the marker could not take a receive row
// of this session, which only a new stream hands to it again, and it has
// room now. Before 2026-12-03 such a row waited for the session's end,
// which in a healthy session may be days: its mail went unmarked (smtpd
// answered 451) and the stored cursor stayed below it all that time.
func (t *tracker) restream() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.overflow != 0 && t.roomed
}

// pendingRecv is a merged receive row without its mark.
type pendingRecv struct {
	key   model.Key
	mail  model.Key
	stamp uint64
	// at names the sites (by name) known to hold all four rows of the
	// mail: the pump's source and destination when the merged batch held
	// the receive, mail, header and body rows or an earlier batch of the
	// session merged them (presence). The pump then marks the mail in
	// that merge; with MinCopies above 2 the marker counts them present
	// if it cannot reach them.
	at []string
}

// lagTracker measures how far a pump's destination is behind its source,
// in stamps and in time. It is read at scrape time, so the figures keep
// growing while a link is down. Safe for concurrent use.
//
// The figures mean nothing until the pump has read both its cursor (start)
// and a stamp of the source (seen, status); known says when they do. A
// session reads the source's status before the destination's cursor, and
// while the destination could not be reached since backupd started,
// merged was 0: lag_rows was the source's whole stamp (about 1.8e15,
// microseconds since 1970) and lag_seconds the time since the first
// status, until 2026-12-03.
type lagTracker struct {
	mu      sync.Mutex
	head    uint64 // highest source stamp known (stream rows, status)
	merged  uint64 // highest source stamp merged
	started bool   // start has been called: merged is past the cursor read
	heard   bool   // seen has been called: head is a stamp of the source
	// run is the source's stamp figures from its last status: the gap
	// (Before, Floor) whose stamps stand for no change, and its rows at
	// Last.
	run   wire.Stamps
	marks []lagMark
}

// lagMark: stamp was first known to exist at the source at time at.
type lagMark struct {
	stamp uint64
	at    time.Time
}

const maxLagMarks = 4096

// seen records that the source has committed stamp by time at.
func (l *lagTracker) seen(stamp uint64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heard = true
	if stamp <= l.head {
		return
	}
	l.head = stamp
	if stamp <= l.merged {
		return
	}
	// Coalesce marks that are close in time: the later stamp inherits the
	// earlier time, which overstates the lag by at most 5 ms.
	if n := len(l.marks); n > 0 && (at.Sub(l.marks[n-1].at) < 5*time.Millisecond || n >= maxLagMarks) {
		l.marks[n-1].stamp = stamp
		return
	}
	l.marks = append(l.marks, lagMark{stamp, at})
}

// start records the cursor a session read from the destination. It may be
// below what was merged before: the destination came back with an older
// copy of its store (or the cursor was held below unmarked mails), and
// the changes above it are to be sent again. When those changes became
// known is lost; their age counts from now.
func (l *lagTracker) start(cursor uint64, at time.Time) {
	l.mu.Lock()
	l.started = true
	if cursor < l.merged {
		if l.head > cursor {
			if len(l.marks) > 0 && l.marks[0].at.Before(at) {
				at = l.marks[0].at
			}
			l.marks = append([]lagMark{{l.merged, at}}, l.marks...)
		}
		l.merged = cursor
	}
	l.mu.Unlock()
	l.done(cursor)
}

// restarted takes the source's stamp figures read at a session's start,
// before its stream: no row of this session is seen yet, so a last stamp
// below the highest one seen means the source came back with an older
// copy of its store, and the changes seen above it are gone (a new run's
// stamps start above them). They no longer count.
func (l *lagTracker) restarted(st wire.Stamps, at time.Time) {
	l.mu.Lock()
	if st.Last < l.head {
		l.head = max(st.Last, l.merged)
		i := len(l.marks)
		for i > 0 && l.marks[i-1].stamp > l.head {
			i--
		}
		l.marks = l.marks[:i]
	}
	l.mu.Unlock()
	l.status(st, at)
}

// done records that everything up to stamp is merged.
func (l *lagTracker) done(stamp uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.merged = max(l.merged, stamp)
	i := 0
	for i < len(l.marks) && l.marks[i].stamp <= l.merged {
		i++
	}
	l.marks = l.marks[i:]
}

// status takes the source's stamp figures from a status answer.
func (l *lagTracker) status(st wire.Stamps, at time.Time) {
	l.mu.Lock()
	l.run = st
	l.mu.Unlock()
	l.seen(st.Last, at)
}

// known reports whether the pump has read its cursor and a stamp of the
// source, so that values means something. Once true it stays true: a
// caller that saw it true may call values after it.
func (l *lagTracker) known() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started && l.heard
}

// values returns the lag in changes (stamps that may stand for a change)
// and in seconds at now. Before known, the figures are not a lag.
func (l *lagTracker) values(now time.Time) (rows uint64, secs float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := wire.Stamps{Last: l.head, Before: l.run.Before, Floor: l.run.Floor}
	if l.run.Rows > 0 && l.head >= l.run.Last {
		// The rows counted at the status, and at most one more for each
		// stamp since: the bound on changes without the microseconds
		// between stamps of the source's earlier runs.
		st.Rows = l.run.Rows + (l.head - l.run.Last)
	}
	rows = st.Behind(l.merged)
	if len(l.marks) > 0 {
		secs = now.Sub(l.marks[0].at).Seconds()
	}
	return rows, secs
}

// lagCollector exports every pump's lag at scrape time. A pump whose lag
// is not known yet (lagTracker.known) has no sample: an absent series
// says "unknown", where any number would be read as a lag (0 as caught
// up; the bogus 1.8e15 as a flood of changes, setting off alerts).
type lagCollector struct {
	pumps      []*pump
	rows, secs *prometheus.Desc
}

func newLagCollector(pumps []*pump) *lagCollector {
	return &lagCollector{
		pumps: pumps,
		rows: prometheus.NewDesc("twinmx_backupd_lag_rows",
			"Changes committed at the source site and not yet merged into the destination (difference of change stamps).",
			[]string{"from", "to"}, nil),
		secs: prometheus.NewDesc("twinmx_backupd_lag_seconds",
			"Age of the oldest change known to exist at the source site and not yet merged into the destination.",
			[]string{"from", "to"}, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rows
	ch <- c.secs
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, p := range c.pumps {
		if !p.lag.known() {
			continue
		}
		rows, secs := p.lag.values(now)
		ch <- prometheus.MustNewConstMetric(c.rows, prometheus.GaugeValue, float64(rows), p.src.Name, p.dst.Name)
		ch <- prometheus.MustNewConstMetric(c.secs, prometheus.GaugeValue, secs, p.src.Name, p.dst.Name)
	}
}
