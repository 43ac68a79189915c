package digest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// fakeDB is an in-memory dbd: content-keyed rows, max-only columns, scans
// newest first. Safe for concurrent use.
type fakeDB struct {
	mu    sync.Mutex
	rows  map[model.Table]map[model.Key]*wire.Row
	order map[model.Table][]model.Key
}

var _ DB = (*fakeDB)(nil)

func newFakeDB() *fakeDB {
	return &fakeDB{rows: map[model.Table]map[model.Key]*wire.Row{}, order: map[model.Table][]model.Key{}}
}

func (f *fakeDB) FindKey(_ context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rows[t][k]
	if r == nil {
		return nil, client.ErrNotFound
	}
	c := *r
	c.State = r.State.Clone()
	return &c, nil
}

func (f *fakeDB) ScanKeys(_ context.Context, t model.Table, limit int) ([]model.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := slices.Clone(f.order[t])
	slices.Reverse(ks)
	return ks[:min(limit, len(ks))], nil
}

func (f *fakeDB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Check first: a batch is atomic.
	for _, r := range reqs {
		if r.Op == wire.OpSet && f.rows[r.Table][r.Ref.KeyIn(r.Table)] == nil && !inserts(reqs, r.Table, r.Ref.KeyIn(r.Table)) {
			return nil, fmt.Errorf("fake: set on a missing row of %s", r.Table)
		}
	}
	out := make([]wire.Result, len(reqs))
	for i, r := range reqs {
		switch r.Op {
		case wire.OpFindOrInsert:
			out[i].New = f.insertLocked(r.Table, r.Content)
		case wire.OpSet:
			row := f.rows[r.Table][r.Ref.KeyIn(r.Table)]
			if _, err := row.State.Set(r.Name, r.Value); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("fake: op %v", r.Op)
		}
	}
	return out, nil
}

func inserts(reqs []wire.Request, t model.Table, k model.Key) bool {
	for _, r := range reqs {
		if r.Op == wire.OpFindOrInsert && r.Table == t && model.KeyOf(t, r.Content) == k {
			return true
		}
	}
	return false
}

func (f *fakeDB) insertLocked(t model.Table, content []byte) bool {
	k := model.KeyOf(t, content)
	if f.rows[t] == nil {
		f.rows[t] = map[model.Key]*wire.Row{}
	}
	if f.rows[t][k] != nil {
		return false
	}
	f.rows[t][k] = &wire.Row{Table: t, Key: k, Content: slices.Clone(content), HasContent: true}
	f.order[t] = append(f.order[t], k)
	return true
}

// insert stores a row and returns its key.
func (f *fakeDB) insert(t model.Table, content []byte) model.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.insertLocked(t, content)
	return model.KeyOf(t, content)
}

func (f *fakeDB) set(t model.Table, k model.Key, col string, v uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.rows[t][k].State.Set(col, v); err != nil {
		panic(err)
	}
}

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
