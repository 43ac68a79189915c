package confmail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// fakeDB is an in-memory dbd: content-keyed rows, max-only columns, atomic
// batches. It counts batches, so a test sees whether a mail changed
// anything. Safe for concurrent use.
type fakeDB struct {
	mu      sync.Mutex
	rows    map[model.Table]map[model.Key]*wire.Row
	order   map[model.Table][]model.Key
	batches int
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
	if len(reqs) > wire.MaxBatchOps {
		return nil, fmt.Errorf("fake: batch of %d", len(reqs))
	}
	// Check first: a batch is atomic.
	for _, r := range reqs {
		if r.Op == wire.OpSet && f.rows[r.Table][r.Ref.KeyIn(r.Table)] == nil && !inserts(reqs, r.Table, r.Ref.KeyIn(r.Table)) {
			return nil, fmt.Errorf("fake: set on a missing row of %s", r.Table)
		}
	}
	// Apply to copies and keep them only if every request succeeds: a
	// batch is atomic. A request dbd would refuse (a row with more than
	// model.MaxColumns columns, a bad name) fails the batch as
	// bad-request, as dbd answers it.
	rows := map[model.Table]map[model.Key]*wire.Row{}
	for t, m := range f.rows {
		rows[t] = map[model.Key]*wire.Row{}
		for k, r := range m {
			c := *r
			c.State = r.State.Clone()
			rows[t][k] = &c
		}
	}
	order := map[model.Table][]model.Key{}
	for t, ks := range f.order {
		order[t] = slices.Clone(ks)
	}
	out := make([]wire.Result, len(reqs))
	for i, r := range reqs {
		switch r.Op {
		case wire.OpFindOrInsert:
			k := model.KeyOf(r.Table, r.Content)
			if rows[r.Table] == nil {
				rows[r.Table] = map[model.Key]*wire.Row{}
			}
			if rows[r.Table][k] == nil {
				rows[r.Table][k] = &wire.Row{Table: r.Table, Key: k, Content: slices.Clone(r.Content), HasContent: true}
				order[r.Table] = append(order[r.Table], k)
				out[i].New = true
			}
		case wire.OpSet:
			row := rows[r.Table][r.Ref.KeyIn(r.Table)]
			if _, err := row.State.Set(r.Name, r.Value); err != nil {
				return nil, &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("store: invalid request: %v", err)}
			}
		default:
			return nil, fmt.Errorf("fake: op %v", r.Op)
		}
	}
	f.rows, f.order = rows, order
	f.batches++
	return out, nil
}

func (f *fakeDB) batchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

func inserts(reqs []wire.Request, t model.Table, k model.Key) bool {
	for _, r := range reqs {
		if r.Op == wire.OpFindOrInsert && r.Table == t && model.KeyOf(t, r.Content) == k {
			return true
		}
	}
	return false
}

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
