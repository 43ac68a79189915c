package server

import (
	"sync"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Read-ahead: POP3 clients retrieve messages in order, and fetching one is
// a dbd round trip. While message n is being sent, the next ones are
// fetched, so the client's RETR n+1 finds its mail ready and the round
// trips overlap instead of adding up. They are fetched aheadBatch or more
// at a time, in one dbd request (op mails: one snapshot, one answer write).
// The sizes are known from the login, so what is held ahead is bounded in
// bytes as well as in messages.
const (
	aheadCount   = 32      // messages fetched ahead at most
	aheadBatch   = 8       // fewest messages worth a request, except at the end
	aheadBytes   = 1 << 20 // bytes fetched ahead at most (pending messages' sizes)
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

// prefetch fetches, in one request, the messages among the aheadCount
// after n that are not pending already, not marked deleted and not known
// to be large — once there are aheadBatch of them, or the maildrop ends
// within reach.
func (c *conn) prefetch(n int) {
	a := &c.ahead
	if a.pending == nil {
		a.pending = make(map[int]*fetched)
	}
	var (
		ms    []mailbox.Message
		drops [][]string
		fs    []*fetched
		ks    []int
	)
	var held int64
	for k := range a.pending {
		held += c.drop.msgs[k-1].size
	}
	full := false // the byte bound, not the end of the window, stopped the batch
	for k := n + 1; k <= n+aheadCount && k <= len(c.drop.msgs); k++ {
		m := &c.drop.msgs[k-1]
		if _, ok := a.pending[k]; ok || m.deleted || !m.sized || m.size > aheadMaxSize {
			continue
		}
		if held+m.size > aheadBytes {
			full = true
			break
		}
		held += m.size
		ms, drops, ks = append(ms, m.m), append(drops, m.drop), append(ks, k)
	}
	if len(ms) == 0 || len(ms) < aheadBatch && !full && n+aheadCount < len(c.drop.msgs) {
		return
	}
	for _, k := range ks {
		f := &fetched{done: make(chan struct{})}
		a.pending[k] = f
		fs = append(fs, f)
	}
	a.wg.Go(func() {
		ctx, cancel := c.storeCtx()
		defer cancel()
		raws, errs := c.s.cfg.Store.FetchMany(ctx, ms, drops)
		for i, f := range fs {
			f.raw, f.err = raws[i], errs[i]
			close(f.done)
		}
	})
}
