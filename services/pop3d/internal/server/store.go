package server

import (
	"context"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Store is what pop3d needs of the mail store; *mailbox.Store implements it.
type Store interface {
	// Login checks a password; mailbox.ErrAuth for any authentication failure.
	Login(ctx context.Context, login, password string) (*mailbox.Account, error)
	// Messages lists a mailbox's acknowledged, not deleted mail after row number after.
	Messages(ctx context.Context, mailbox model.Key, after uint64) ([]mailbox.Message, error)
	// Fetch returns a mail as received, without the dropped header fields.
	Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error)
	// FetchMany is Fetch for several mails, in one request to dbd.
	FetchMany(ctx context.Context, ms []mailbox.Message, drops [][]string) ([][]byte, []error)
	// Size returns len(Fetch(ctx, m, drop)) without reading the body.
	Size(ctx context.Context, m mailbox.Message, drop []string) (int64, error)
	// RememberSizes caches unfiltered sizes in the receive rows.
	RememberSizes(ctx context.Context, msgs []mailbox.Message, sizes []int64) error
	// Delete marks receive rows deleted, atomically.
	Delete(ctx context.Context, keys []model.Key) error
}

var _ Store = (*mailbox.Store)(nil)
