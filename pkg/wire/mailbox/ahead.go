package mailbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// aheadKeys is the most mails one read-ahead request asks for. The byte
// budget, not this, usually ends a request of large mails; for small ones
// it keeps the wait for the first mail of a request short.
const aheadKeys = wire.MaxMailsKeys / 2

// ErrAheadStopped is what Ahead.Next returns after Stop.
var ErrAheadStopped = errors.New("mailbox: read-ahead stopped")

// Ahead reads the bytes of a run of mails from dbd ahead of their reader,
// in order, with up to aheadWindow requests in flight (op mails with a
// byte budget each): the mails read and not yet taken and the budgets of
// the requests in flight add up to less than the limit, plus at most one
// mail a request, however large (dbd sends a mail whole once it started
// it). A mail
// count alone could not bound memory: eight 64 MiB mails are 512 MiB.
type Ahead struct {
	mu      sync.Mutex
	cond    *sync.Cond    // signals a mail ready, room made, or stop
	ready   []fetchedMail // ready[head:] wait for Next
	head    int
	held    int // bytes of ready
	stopped bool
	ended   bool // the reader goroutine returned
	cancel  context.CancelFunc
	done    chan struct{}
	spare   []byte // given back by Recycle, for the next mail Next joins
	// heads: the mails are read without their bodies, for NextHead (see
	// ReadAheadHeads); fixed before the reader starts.
	heads bool
}

// Recycle gives back the bytes of a mail Next returned, once the caller
// no longer needs them (nor anything sliced from them): Next joins the
// next mail that fits into that memory instead of new memory. Optional;
// only one buffer of at most recycleMax bytes is kept.
func (a *Ahead) Recycle(raw []byte) {
	if raw == nil || cap(raw) > recycleMax {
		return
	}
	a.mu.Lock()
	if !a.stopped && cap(raw) > cap(a.spare) {
		a.spare = raw[:0]
	}
	a.mu.Unlock()
}

// recycleMax bounds the buffer Recycle keeps: typical mails.
const recycleMax = 64 << 10

// fetchedMail is one mail read: its parts, joined by Next (so into memory
// a reader gave back with Recycle), or its bytes or error.
type fetchedMail struct {
	msg   *Message // an element of the reader's msgs; nil: raw and err
	parts model.Parts
	whole bool // parts has a header and a body
	drop  []string
	size  int    // bytes held: of parts, or of raw
	raw   []byte // the mail, or for NextHead its head's header
	total int64  // for NextHead: the whole mail's length (Head.Size)
	err   error
	from  Origin
	// release, if not nil, gives back the memory of the rows of this
	// mail's dbd answer (pooledDB), once this last mail of it is joined.
	release func()
}

// ReadAhead starts reading msgs (drops[i] are msgs[i]'s dropped header
// fields, see Fetch) ahead of Next, holding about limit bytes at most.
// Each dbd request gets timeout. The caller must call Stop.
func (s *Store) ReadAhead(ctx context.Context, msgs []Message, drops [][]string, limit int, timeout time.Duration) *Ahead {
	return s.readAhead(ctx, msgs, drops, limit, timeout, false)
}

// ReadAheadHeads is ReadAhead for a reader of the mails' heads (see
// Head), taken with NextHead: dbd sends each mail's rows but its body's
// content (wire.MailsNoBody), so a folder listing does not read the
// bodies, most of a mail's bytes. A dbd older than that flag sends the
// bodies, and the heads are cut from them.
func (s *Store) ReadAheadHeads(ctx context.Context, msgs []Message, drops [][]string, limit int, timeout time.Duration) *Ahead {
	return s.readAhead(ctx, msgs, drops, limit, timeout, true)
}

func (s *Store) readAhead(ctx context.Context, msgs []Message, drops [][]string, limit int, timeout time.Duration, heads bool) *Ahead {
	ctx, cancel := context.WithCancel(ctx)
	a := &Ahead{cancel: cancel, done: make(chan struct{}), heads: heads}
	a.cond = sync.NewCond(&a.mu)
	go a.run(ctx, s, msgs, drops, max(limit, 1), timeout)
	return a
}

// errAheadKind is what Next returns on a read-ahead of heads, and NextHead
// on one of whole mails.
var errAheadKind = errors.New("mailbox: read-ahead of the other kind (ReadAhead: Next; ReadAheadHeads: NextHead)")

// Next returns the next mail's bytes, or its error; it waits for the read.
func (a *Ahead) Next() ([]byte, error) {
	raw, _, err := a.NextOrigin()
	return raw, err
}

// NextOrigin is Next that also returns the rows the bytes were joined
// from (see Origin).
func (a *Ahead) NextOrigin() ([]byte, Origin, error) {
	if a.heads {
		return nil, Origin{}, errAheadKind
	}
	m, spare, ok := a.next()
	if !ok {
		return nil, Origin{}, ErrAheadStopped
	}
	if m.msg == nil {
		if m.release != nil {
			m.release()
		}
		return m.raw, m.from, m.err
	}
	raw, err := joinParts(*m.msg, m.parts, m.whole, m.drop, spare)
	if m.release != nil {
		m.release() // raw is a copy
	}
	return raw, m.from, err
}

// NextHead returns the next mail's head and the rows it was joined from,
// or its error, from a read-ahead of ReadAheadHeads; it waits for the
// read. The head's header may lie in memory given back with Recycle.
func (a *Ahead) NextHead() (Head, Origin, error) {
	if !a.heads {
		return Head{}, Origin{}, errAheadKind
	}
	m, spare, ok := a.next()
	if !ok {
		return Head{}, Origin{}, ErrAheadStopped
	}
	if m.msg == nil {
		if m.release != nil {
			m.release()
		}
		return Head{Header: m.raw, Size: m.total}, m.from, m.err
	}
	h, err := joinHead(*m.msg, m.parts, m.whole, m.total, m.drop, spare)
	if m.release != nil {
		m.release() // h.Header is a copy
	}
	return h, m.from, err
}

// next takes the next mail read, waiting for it, and the memory given
// back for joining it; ok is false once stopped or when none is left.
func (a *Ahead) next() (m fetchedMail, spare []byte, ok bool) {
	a.mu.Lock()
	for len(a.ready) == a.head && !a.ended && !a.stopped {
		a.cond.Wait()
	}
	if len(a.ready) == a.head {
		a.mu.Unlock()
		return fetchedMail{}, nil, false
	}
	m = a.ready[a.head]
	a.ready[a.head] = fetchedMail{}
	a.head++
	if a.head == len(a.ready) {
		// The queue's memory serves again: taking from the front of a
		// slice and appending at its end made a new array a few mails.
		a.ready, a.head = a.ready[:0], 0
	}
	a.held -= m.size
	spare = a.spare
	if m.msg != nil {
		a.spare = nil
	}
	a.cond.Broadcast()
	a.mu.Unlock()
	return m, spare, true
}

// Stop cancels the read in progress and waits for the reader to end.
func (a *Ahead) Stop() {
	a.cancel()
	a.mu.Lock()
	a.stopped = true
	a.ready, a.head = nil, 0
	a.spare = nil
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.done
}

// put hands one mail's bytes (joined from the rows o names) or error to
// Next; for NextHead, raw is the head's header and total the mail's size.
func (a *Ahead) put(raw []byte, total int64, o Origin, err error) {
	a.add(fetchedMail{raw: raw, total: total, from: o, err: err, size: len(raw)})
}

// putRows hands one mail's rows to Next or NextHead, which joins them and
// then calls release, if not nil.
func (a *Ahead) putRows(msg *Message, rows []wire.Row, drop []string, release func()) {
	p, whole, o := rowParts(*msg, rows)
	a.add(fetchedMail{msg: msg, parts: p, whole: whole, total: bodySize(rows), drop: drop, size: model.JoinedSizeMax(p), from: o, release: release})
}

func (a *Ahead) add(m fetchedMail) {
	a.mu.Lock()
	if !a.stopped {
		if a.head > 0 && len(a.ready) == cap(a.ready) {
			n := copy(a.ready, a.ready[a.head:])
			clear(a.ready[n:])
			a.ready, a.head = a.ready[:n], 0
		}
		a.ready = append(a.ready, m)
		a.held += m.size
	}
	a.cond.Broadcast()
	a.mu.Unlock()
}

// room returns the bytes a new request may ask for: limit less the mails
// held and the budgets of the requests in flight (reserved), or 0 when
// none are left. With wait it waits for room instead of returning 0. ok
// is false once stopped.
func (a *Ahead) room(limit, reserved int, wait bool) (budget int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for wait && a.held+reserved >= limit && !a.stopped {
		a.cond.Wait()
	}
	return max(limit-a.held-reserved, 0), !a.stopped
}

// aheadWindow is how many read-ahead requests may be in flight at once.
// dbd serves the requests of one connection concurrently, so while it
// reads the next run of mails the run before is on its way or being
// joined here; with one request at a time dbd and this reader took turns,
// and dbd's reads used one core.
const aheadWindow = 2

// aheadReq is one op mails request of the read-ahead: msgs[start:end]
// with a byte budget.
type aheadReq struct {
	start, end, budget int
	done               chan struct{} // closed when rows, release and err are set
	rows               map[model.Key][]wire.Row
	release            func() // gives back the memory of rows; nil: none to give
	err                error
}

// pooledDB is a DB whose mails answers lie in memory it reuses once given
// back (client.Client): the read-ahead gives an answer's back when Next
// has joined its last mail, so a FETCH of many mails does not allocate
// the decrypted answers anew.
type pooledDB interface {
	MailsRowsPooled(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, func(), error)
}

// headsDB is a pooledDB that can send mails without their bodies'
// contents (client.Client.MailsHeadsPooled): the read-ahead of heads asks
// for them so; of any other DB it takes the whole rows.
type headsDB interface {
	MailsHeadsPooled(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, func(), error)
}

var (
	_ pooledDB = (*client.Client)(nil)
	_ headsDB  = (*client.Client)(nil)
)

func (a *Ahead) run(ctx context.Context, s *Store, msgs []Message, drops [][]string, limit int, timeout time.Duration) {
	var window []*aheadReq // in flight, in mail order
	defer func() {
		for _, r := range window {
			<-r.done // ended by the cancelled context
		}
		a.mu.Lock()
		a.ended = true
		a.cond.Broadcast()
		a.mu.Unlock()
		close(a.done)
	}()
	issue := func(start, end, budget int) *aheadReq {
		r := &aheadReq{start: start, end: end, budget: budget, done: make(chan struct{})}
		keys := make([]model.Key, 0, end-start)
		for _, m := range msgs[start:end] {
			keys = append(keys, m.Receive)
		}
		go func() {
			defer close(r.done)
			rctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if h, ok := s.db.(headsDB); ok && a.heads {
				r.rows, r.release, r.err = h.MailsHeadsPooled(rctx, keys, uint64(budget))
			} else if p, ok := s.db.(pooledDB); ok {
				r.rows, r.release, r.err = p.MailsRowsPooled(rctx, keys, uint64(budget))
			} else {
				r.rows, r.err = s.db.MailsRows(rctx, keys, uint64(budget))
			}
		}()
		return r
	}
	// Each request may hold part of the limit, so the window's answers
	// together stay within it (plus a mail each: dbd sends the mail that
	// reaches the budget whole).
	perReq := max(limit/aheadWindow, 1)
	reserved := 0 // the budgets of the window's requests
	next := 0     // the first mail not yet asked for
	for pos := 0; pos < len(msgs); {
		for len(window) < aheadWindow && next < len(msgs) {
			budget, ok := a.room(limit, reserved, len(window) == 0)
			if !ok {
				return
			}
			if budget == 0 {
				break // the reader has to take mails first
			}
			budget = min(budget, perReq)
			end := min(next+aheadKeys, len(msgs))
			window = append(window, issue(next, end, budget))
			reserved += budget
			next = end
		}
		r := window[0]
		<-r.done
		window = window[1:]
		reserved -= r.budget
		var we *wire.Error
		if errors.As(r.err, &we) && we.Code == wire.CodeBadRequest {
			// dbd predates op mails or its budget.
			for _, w := range window {
				<-w.done
			}
			window = nil
			a.perMail(ctx, s, msgs[pos:], drops[pos:], limit, timeout)
			return
		}
		if r.err != nil {
			if ctx.Err() != nil {
				return
			}
			// dbd is unreachable or failing: every mail left gets the
			// error now rather than a timeout each.
			for i := pos; i < len(msgs); i++ {
				a.put(nil, 0, Origin{}, fmt.Errorf("read mail %s: %w", msgs[i].Mail, r.err))
			}
			return
		}
		// dbd looked at every key unless the budget stopped it, which
		// it does right after a mail: keys after the last mail answered
		// are then asked again, before the requests after this one are
		// handed out. The budget counts the contents sent (not a body
		// row's size without it, wire.MailsNoBody).
		end, last, got := r.end, -1, uint64(0)
		for i := r.start; i < r.end; i++ {
			if rows, ok := r.rows[msgs[i].Receive]; ok {
				last = i
				for _, row := range rows {
					if row.HasContent {
						got += row.Size
					}
				}
			}
		}
		if last >= 0 && got >= uint64(r.budget) {
			end = last + 1
		}
		for i := r.start; i < end; i++ {
			// The last mail of the answer takes its release: Next
			// joins the mails in order, so the others are joined by
			// then.
			var release func()
			if i == end-1 {
				release = r.release
			}
			rows, ok := r.rows[msgs[i].Receive]
			if !ok {
				a.add(fetchedMail{err: fmt.Errorf("read mail %s: %w", msgs[i].Mail, client.ErrNotFound), release: release})
				continue
			}
			a.putRows(&msgs[i], rows, drops[i], release)
		}
		pos = end
		if end < r.end {
			budget, ok := a.room(limit, reserved, true)
			if !ok {
				return
			}
			budget = min(budget, perReq)
			window = append([]*aheadReq{issue(end, r.end, budget)}, window...)
			reserved += budget
		}
	}
}

// perMail reads msgs one op mail request at a time, for a dbd without op
// mails.
func (a *Ahead) perMail(ctx context.Context, s *Store, msgs []Message, drops [][]string, limit int, timeout time.Duration) {
	for i := range msgs {
		if _, ok := a.room(limit, 0, true); !ok {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		if a.heads {
			h, o, err := s.FetchHeadOrigin(rctx, msgs[i], drops[i])
			a.put(h.Header, h.Size, o, err)
		} else {
			raw, o, err := s.FetchOrigin(rctx, msgs[i], drops[i])
			a.put(raw, 0, o, err)
		}
		cancel()
	}
}
