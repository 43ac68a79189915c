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
// in order, one request at a time (op mails with a byte budget): the
// mails read and not yet taken hold less than the limit, plus at most one
// mail, however large (dbd sends a mail whole once it started it). A mail
// count alone could not bound memory: eight 64 MiB mails are 512 MiB.
type Ahead struct {
	mu      sync.Mutex
	cond    *sync.Cond // signals a mail ready, room made, or stop
	ready   []fetchedMail
	held    int // bytes of ready
	stopped bool
	ended   bool // the reader goroutine returned
	cancel  context.CancelFunc
	done    chan struct{}
}

type fetchedMail struct {
	raw []byte
	err error
}

// ReadAhead starts reading msgs (drops[i] are msgs[i]'s dropped header
// fields, see Fetch) ahead of Next, holding about limit bytes at most.
// Each dbd request gets timeout. The caller must call Stop.
func (s *Store) ReadAhead(ctx context.Context, msgs []Message, drops [][]string, limit int, timeout time.Duration) *Ahead {
	ctx, cancel := context.WithCancel(ctx)
	a := &Ahead{cancel: cancel, done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	go a.run(ctx, s, msgs, drops, max(limit, 1), timeout)
	return a
}

// Next returns the next mail's bytes, or its error; it waits for the read.
func (a *Ahead) Next() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.ready) == 0 && !a.ended && !a.stopped {
		a.cond.Wait()
	}
	if len(a.ready) == 0 {
		return nil, ErrAheadStopped
	}
	m := a.ready[0]
	a.ready[0] = fetchedMail{}
	a.ready = a.ready[1:]
	a.held -= len(m.raw)
	a.cond.Broadcast()
	return m.raw, m.err
}

// Stop cancels the read in progress and waits for the reader to end.
func (a *Ahead) Stop() {
	a.cancel()
	a.mu.Lock()
	a.stopped = true
	a.ready = nil
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.done
}

// put hands one mail to Next.
func (a *Ahead) put(raw []byte, err error) {
	a.mu.Lock()
	if !a.stopped {
		a.ready = append(a.ready, fetchedMail{raw, err})
		a.held += len(raw)
	}
	a.cond.Broadcast()
	a.mu.Unlock()
}

// room waits until the mails held are under limit and returns the bytes
// left, or false once stopped.
func (a *Ahead) room(limit int) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.held >= limit && !a.stopped {
		a.cond.Wait()
	}
	return limit - a.held, !a.stopped
}

func (a *Ahead) run(ctx context.Context, s *Store, msgs []Message, drops [][]string, limit int, timeout time.Duration) {
	defer func() {
		a.mu.Lock()
		a.ended = true
		a.cond.Broadcast()
		a.mu.Unlock()
		close(a.done)
	}()
	perMail := false // dbd predates op mails or its budget
	for pos := 0; pos < len(msgs); {
		budget, ok := a.room(limit)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		if perMail {
			raw, err := s.Fetch(rctx, msgs[pos], drops[pos])
			cancel()
			a.put(raw, err)
			pos++
			continue
		}
		end := min(pos+aheadKeys, len(msgs))
		keys := make([]model.Key, 0, end-pos)
		for _, m := range msgs[pos:end] {
			keys = append(keys, m.Receive)
		}
		byKey, err := s.db.MailsRows(rctx, keys, uint64(budget))
		cancel()
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeBadRequest {
			perMail = true
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// dbd is unreachable or failing: every mail left gets the
			// error now rather than a timeout each.
			for i := pos; i < len(msgs); i++ {
				a.put(nil, fmt.Errorf("read mail %s: %w", msgs[i].Mail, err))
			}
			return
		}
		// dbd looked at every key unless the budget stopped it, which
		// it does right after a mail: keys after the last mail answered
		// are then asked again.
		last, got := -1, uint64(0)
		for i := pos; i < end; i++ {
			if rows, ok := byKey[msgs[i].Receive]; ok {
				last = i
				for _, r := range rows {
					got += r.Size
				}
			}
		}
		if last >= 0 && got >= uint64(budget) {
			end = last + 1
		}
		for i := pos; i < end; i++ {
			rows, ok := byKey[msgs[i].Receive]
			if !ok {
				a.put(nil, fmt.Errorf("read mail %s: %w", msgs[i].Mail, client.ErrNotFound))
				continue
			}
			a.put(joinRows(msgs[i], rows, drops[i]))
		}
		pos = end
	}
}
