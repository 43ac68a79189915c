package session

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

// mailboxFinder reads a mailbox row (*client.Client implements it).
type mailboxFinder interface {
	Find(ctx context.Context, t model.Table, content []byte) (*wire.Row, error)
}

// mailboxes answers "does this mailbox exist, with which policy" for RCPT,
// remembering answers for a short time: a busy MX asks for the same few
// mailboxes for every mail, and each lookup is a dbd round trip. A mailbox
// removed or given another policy is seen within ttl, a new one within
// ttl/5 (unknown addresses are remembered for less, so a mailbox just added
// soon works). Failed lookups are not remembered.
type mailboxes struct {
	db      mailboxFinder
	ttl     time.Duration
	max     int
	now     func() time.Time
	timeout time.Duration // bound on a dbd lookup; 0: ctx's own

	mu    sync.Mutex
	known map[string]mailboxEntry
}

type mailboxEntry struct {
	exists  bool
	policy  model.Policy
	expires time.Time
}

func newMailboxes(db mailboxFinder, ttl time.Duration, max int, now func() time.Time, timeout time.Duration) *mailboxes {
	return &mailboxes{db: db, ttl: ttl, max: max, now: now, timeout: timeout, known: map[string]mailboxEntry{}}
}

// lookup reports whether the mailbox with this content exists and its
// policy; an error means dbd could not answer. Only a lookup that asks
// dbd gets a context with the timeout: a timer per RCPT answered from the
// cache was a measurable share of smtpd's CPU under load.
func (m *mailboxes) lookup(ctx context.Context, content []byte) (exists bool, policy model.Policy, err error) {
	now := m.now()
	m.mu.Lock()
	e, ok := m.known[string(content)]
	m.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.exists, e.policy, nil
	}
	if m.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.timeout)
		defer cancel()
	}
	row, err := m.db.Find(ctx, model.Mailbox, content)
	switch {
	case errors.Is(err, client.ErrNotFound):
		e = mailboxEntry{}
	case err != nil:
		return false, 0, fmt.Errorf("find mailbox %q: %w", content, err)
	default:
		// An unknown policy (from a newer version) reads as the full
		// check, like spamd reads it, so recipients are kept apart by
		// what will really be applied to them.
		p, _ := model.PolicyOf(row.State.Cols[model.ColPolicy])
		e = mailboxEntry{exists: true, policy: p}
	}
	if m.ttl > 0 {
		e.expires = now.Add(m.ttl)
		if !e.exists {
			e.expires = now.Add(m.ttl / 5)
		}
		m.mu.Lock()
		if len(m.known) >= m.max {
			clear(m.known) // crude but bounded; entries are cheap to refetch
		}
		m.known[string(content)] = e
		m.mu.Unlock()
	}
	return e.exists, e.policy, nil
}
