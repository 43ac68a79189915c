package server

import (
	"sync"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Read-ahead: POP3 clients retrieve messages in order, and fetching one is
// a few dbd round trips. While message n is being sent, the next few are
// fetched concurrently, so the client's RETR n+1 finds its mail ready and
// the round trips overlap instead of adding up.
const (
	aheadCount   = 4       // messages fetched ahead
	aheadMaxSize = 1 << 20 // larger messages are fetched on demand only (memory)
)

type fetched struct {
	done chan struct{}
	raw  []byte
	err  error
}

// readAhead is owned by the connection's goroutine; its fetches are owned
// by wg, which the connection waits for before it ends.
type readAhead struct {
	wg      sync.WaitGroup
	pending map[int]*fetched
}

// take returns message n's prefetched content, if a fetch for it succeeded,
// and forgets fetches of messages before n (the client skipped them).
func (a *readAhead) take(n int) ([]byte, bool) {
	f, ok := a.pending[n]
	for k := range a.pending {
		if k <= n {
			delete(a.pending, k)
		}
	}
	if !ok {
		return nil, false
	}
	<-f.done
	return f.raw, f.err == nil
}

// start fetches the messages after n that are not marked deleted, not
// pending already and not known to be large.
func (c *conn) prefetch(n int) {
	a := &c.ahead
	if a.pending == nil {
		a.pending = make(map[int]*fetched)
	}
	for k := n + 1; k <= n+aheadCount && k <= len(c.drop.msgs); k++ {
		m := &c.drop.msgs[k-1]
		if _, ok := a.pending[k]; ok || m.deleted || !m.sized || m.size > aheadMaxSize {
			continue
		}
		f := &fetched{done: make(chan struct{})}
		a.pending[k] = f
		a.wg.Add(1)
		go func(msg mailbox.Message, drop []string) {
			defer a.wg.Done()
			defer close(f.done)
			ctx, cancel := c.storeCtx()
			defer cancel()
			f.raw, f.err = c.s.cfg.Store.Fetch(ctx, msg, drop)
		}(m.m, m.drop)
	}
}
