package confmail

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/spamdtest"
)

// fakeDB is the in-memory dbd of spamd's tests.
type fakeDB = spamdtest.DB

var _ DB = (*fakeDB)(nil)

func newFakeDB() *fakeDB { return spamdtest.NewDB() }

// fakeSender records the mails it is given and their recipients.
type fakeSender struct {
	mu    sync.Mutex
	sent  [][]byte
	rcpts []string
}

func (s *fakeSender) recipients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rcpts)
}

func (s *fakeSender) mails() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

func (s *fakeSender) Send(_ context.Context, _, to string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, slices.Clone(msg))
	s.rcpts = append(s.rcpts, to)
	return nil
}

// missHook is a DB that calls hook once, the first time a FindKey of the
// row key answers "not found", before returning that answer: what another
// instance does between a read and what follows it.
type missHook struct {
	*fakeDB
	key  model.Key
	once sync.Once
	hook func()
}

func (h *missHook) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	row, err := h.fakeDB.FindKey(ctx, t, k)
	if k == h.key && errors.Is(err, client.ErrNotFound) {
		h.once.Do(h.hook)
	}
	return row, err
}
