package server

import (
	"context"
	"fmt"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Store is what pop3d needs of the mail store; *DBStore implements it.
type Store interface {
	// Login checks a password; mailbox.ErrAuth for any authentication failure.
	Login(ctx context.Context, login, password string) (*mailbox.Account, error)
	// Messages lists a mailbox's acknowledged, not deleted mail after row number after.
	Messages(ctx context.Context, mailbox model.Key, after uint64) ([]mailbox.Message, error)
	// Fetch returns a mail as received, without the dropped header fields.
	Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error)
	// FetchMany is Fetch for several mails, in one request to dbd.
	FetchMany(ctx context.Context, ms []mailbox.Message, drops [][]string) ([][]byte, []error)
	// Recycle gives back a mail's bytes from Fetch or FetchMany once they
	// are sent, for later fetches to fill.
	Recycle(raw []byte)
	// RememberSizes caches unfiltered sizes (len of Fetch) in the receive
	// rows, for imapd's RFC822.SIZE.
	RememberSizes(ctx context.Context, msgs []mailbox.Message, sizes []int64) error
	// SetReceiveColumns sets column names[i] of receive row keys[i] to
	// values[i] (a pop3.* column: the mailbox role may set them).
	SetReceiveColumns(ctx context.Context, keys []model.Key, names []string, values []uint64) error
	// Delete marks receive rows deleted, atomically.
	Delete(ctx context.Context, keys []model.Key) error
}

// DBStore is pop3d's Store over a dbd client: a mailbox.Store plus the
// column writes of pop3d's size cache. Safe for concurrent use.
type DBStore struct {
	*mailbox.Store
	db mailbox.DB
}

var _ Store = (*DBStore)(nil)

// NewDBStore returns the Store over db (a client with the mailbox role),
// its logins checked as o says.
func NewDBStore(db mailbox.DB, o mailbox.Options) *DBStore {
	return &DBStore{Store: mailbox.NewWith(db, o), db: db}
}

// SetReceiveColumns implements Store, in batches of at most
// wire.MaxBatchOps sets.
func (s *DBStore) SetReceiveColumns(ctx context.Context, keys []model.Key, names []string, values []uint64) error {
	reqs := make([]wire.Request, 0, len(keys))
	for i, k := range keys {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k},
			Name: names[i], Value: values[i]})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), wire.MaxBatchOps)
		if _, err := s.db.Batch(ctx, reqs[:n]); err != nil {
			return fmt.Errorf("set %d receive columns: %w", n, err)
		}
		reqs = reqs[n:]
	}
	return nil
}
