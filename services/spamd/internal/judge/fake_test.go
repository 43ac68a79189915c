package judge

import "github.com/twinmx/twinmx/services/spamd/internal/spamdtest"

// fakeDB is the in-memory dbd of spamd's tests.
type fakeDB = spamdtest.DB

var _ DB = (*fakeDB)(nil)

func newFakeDB() *fakeDB { return spamdtest.NewDB() }
