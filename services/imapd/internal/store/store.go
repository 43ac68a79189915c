// Package store is imapd's storage over dbd with the mailbox role: the
// shared mailbox view (pkg/wire/mailbox: login, listing, byte-exact
// fetch, deletion, watch by parent) plus what IMAP adds: the store's
// incarnation (for UIDVALIDITY), flag columns in one atomic batch, and
// keyword name rows (see internal/flags).
//
// Store is safe for concurrent use by many sessions: it holds only the
// dbd client (itself concurrent) and a cache of keyword names, which are
// immutable row contents.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
)

// DB is what Store needs of a dbd client; *client.Client implements it.
type DB interface {
	mailbox.DB
	Status(ctx context.Context) ([]wire.Figure, error)
}

var _ DB = (*client.Client)(nil)

// ErrNoIncarnation is returned when dbd's status lacks the incarnation
// figure (a dbd from before it existed): imapd cannot make UIDVALIDITY
// safe across a store rebuild and refuses to select.
var ErrNoIncarnation = errors.New("store: dbd reports no incarnation")

// Store reads and changes the mail of IMAP accounts.
type Store struct {
	db DB
	mb *mailbox.Store

	mu       sync.Mutex
	keywords map[model.Key]string   // hashed keyword rows seen (immutable contents)
	names    map[model.Key]string   // folder name rows seen (immutable contents)
	validity map[validityKey]uint64 // validity marker row numbers (fixed per incarnation)
}

// New returns a Store over db, its logins checked as o says.
func New(db DB, o mailbox.Options) *Store {
	return &Store{db: db, mb: mailbox.NewWith(db, o), keywords: map[model.Key]string{}, names: map[model.Key]string{},
		validity: map[validityKey]uint64{}}
}

// Login checks a login and password; mailbox.ErrAuth for any failure to
// authenticate.
func (s *Store) Login(ctx context.Context, login, password string) (*mailbox.Account, error) {
	return s.mb.Login(ctx, login, password)
}

// Incarnation returns dbd's store incarnation: a random number fixed when
// the store was created. Local row numbers (our UIDs) mean something only
// within one incarnation.
func (s *Store) Incarnation(ctx context.Context) (uint64, error) {
	figs, err := s.db.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("dbd status: %w", err)
	}
	v, ok, err := wire.FigureUint(figs, "incarnation")
	switch {
	case err != nil:
		return 0, fmt.Errorf("dbd: %w", err)
	case !ok:
		return 0, ErrNoIncarnation
	}
	return v, nil
}

// Fetch returns a mail byte for byte as received, less dropped fields.
func (s *Store) Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error) {
	return s.mb.Fetch(ctx, m, drop)
}

// FetchOrigin is Fetch that also names the rows the bytes were joined
// from (see mailbox.Origin).
func (s *Store) FetchOrigin(ctx context.Context, m mailbox.Message, drop []string) ([]byte, mailbox.Origin, error) {
	return s.mb.FetchOrigin(ctx, m, drop)
}

// ReadAhead reads mails ahead of their reader, in order, holding about
// limit bytes (see mailbox.Ahead).
func (s *Store) ReadAhead(ctx context.Context, ms []mailbox.Message, drops [][]string, limit int, timeout time.Duration) *mailbox.Ahead {
	return s.mb.ReadAhead(ctx, ms, drops, limit, timeout)
}

// ReadAheadHeads is ReadAhead of the mails' heads: header and size, not
// the bodies (see mailbox.Store.ReadAheadHeads).
func (s *Store) ReadAheadHeads(ctx context.Context, ms []mailbox.Message, drops [][]string, limit int, timeout time.Duration) *mailbox.Ahead {
	return s.mb.ReadAheadHeads(ctx, ms, drops, limit, timeout)
}

// Size returns the length of what Fetch returns, without reading the body.
func (s *Store) Size(ctx context.Context, m mailbox.Message, drop []string) (int64, error) {
	return s.mb.Size(ctx, m, drop)
}

// Delete marks receive rows deleted (IMAP EXPUNGE).
func (s *Store) Delete(ctx context.Context, keys []model.Key) error {
	return s.mb.Delete(ctx, keys)
}

// Events is an open watch: Next returns each changed row (without
// content) until an error; callers must call Close.
type Events interface {
	Next(ctx context.Context) (*wire.Row, error)
	Close()
}

// Watch subscribes to changes of a mailbox's receive rows. The
// subscription is live when Watch returns: list after it to miss nothing.
func (s *Store) Watch(ctx context.Context, box model.Key) (Events, error) {
	return s.mb.Watch(ctx, box)
}

// WatchText subscribes to changes of the text row with key k (imapd: the
// account's folder set row, which CREATE and DELETE change at either
// site), live when it returns. The row need not exist yet.
func (s *Store) WatchText(ctx context.Context, k model.Key) (Events, error) {
	st, err := s.db.Watch(ctx, model.Text, []model.Key{k}, false)
	if err != nil {
		return nil, fmt.Errorf("watch text row %s: %w", k, err)
	}
	return st, nil
}

// ColumnSet raises one column of one receive row (or, with Table
// model.Text, of a text row: spam feedback).
type ColumnSet struct {
	Receive model.Key
	Column  string
	Value   uint64
	Table   model.Table // zero: model.Receive
}

// SetColumns inserts the text rows (keyword names, feedback rows) and
// raises the columns, in batches of at most wire.MaxBatchOps, each atomic
// (a MOVE of up to about 1,300 mails, with its feedback, is one batch).
// Texts go first, so a column never links to a row that does not exist
// here.
func (s *Store) SetColumns(ctx context.Context, texts [][]byte, sets []ColumnSet) error {
	reqs := make([]wire.Request, 0, len(texts)+len(sets))
	for _, t := range texts {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: t})
	}
	for _, c := range sets {
		t := c.Table
		if t == 0 {
			t = model.Receive
		}
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: t, Ref: wire.Ref{ByKey: true, Key: c.Receive},
			Name: c.Column, Value: c.Value})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), wire.MaxBatchOps)
		if _, err := s.db.Batch(ctx, reqs[:n]); err != nil {
			return fmt.Errorf("set %d columns: %w", n, err)
		}
		reqs = reqs[n:]
	}
	for _, t := range texts {
		if kw, ok := flags.ParseKeywordContent(t); ok {
			// The same bound as Keyword's: a client STOREing new
			// keywords on mail after mail would otherwise grow the
			// cache (and imapd) for as long as the process runs.
			s.mu.Lock()
			if len(s.keywords) < maxKeywordsCached {
				s.keywords[model.KeyOf(model.Text, t)] = kw
			}
			s.mu.Unlock()
		}
	}
	return nil
}

// maxKeywordsCached bounds the keyword names a Store keeps.
const maxKeywordsCached = 100000

// Keyword returns the keyword a hashed keyword column links to; ok is
// false when the row is missing here (not replicated yet) or malformed.
func (s *Store) Keyword(ctx context.Context, k model.Key) (string, bool, error) {
	s.mu.Lock()
	kw, ok := s.keywords[k]
	s.mu.Unlock()
	if ok {
		return kw, true, nil
	}
	row, err := s.db.FindKey(ctx, model.Text, k)
	if errors.Is(err, client.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("find keyword %s: %w", k, err)
	}
	kw, ok = flags.ParseKeywordContent(row.Content)
	if !ok {
		return "", false, nil
	}
	s.mu.Lock()
	if len(s.keywords) < maxKeywordsCached {
		s.keywords[k] = kw
	}
	s.mu.Unlock()
	return kw, true, nil
}
