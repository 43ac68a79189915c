package digest

import (
	"context"
	"slices"
	"sync"

	"github.com/twinmx/twinmx/services/spamd/internal/spamdtest"
)

// fakeDB is the in-memory dbd of spamd's tests.
type fakeDB = spamdtest.DB

var _ DB = (*fakeDB)(nil)

func newFakeDB() *fakeDB { return spamdtest.NewDB() }

// fakeSender records the mails it is given.
type fakeSender struct {
	mu   sync.Mutex
	sent []sentMail
	err  error
}

type sentMail struct {
	from, to string
	msg      []byte
}

func (s *fakeSender) Send(_ context.Context, from, to string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.sent = append(s.sent, sentMail{from, to, slices.Clone(msg)})
	return nil
}

func (s *fakeSender) mails() []sentMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}
