package judge

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

// fakeDB is an in-memory dbd for judging single attempts: content-keyed
// rows and max-only columns; it cannot watch. Safe for concurrent use.
type fakeDB struct {
	mu   sync.Mutex
	rows map[model.Table]map[model.Key]*wire.Row
}

var _ DB = (*fakeDB)(nil)

func newFakeDB() *fakeDB { return &fakeDB{rows: map[model.Table]map[model.Key]*wire.Row{}} }

func (f *fakeDB) Watch(context.Context, model.Table, []model.Key, bool) (*client.Stream, error) {
	return nil, errors.New("fake: no watch")
}

func (f *fakeDB) ScanKeys(context.Context, model.Table, int) ([]model.Key, error) { return nil, nil }

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

func (f *fakeDB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]wire.Result, len(reqs))
	for i, r := range reqs {
		switch r.Op {
		case wire.OpFindOrInsert:
			out[i].New = f.insertLocked(r.Table, r.Content)
		case wire.OpSet:
			row := f.rows[r.Table][r.Ref.KeyIn(r.Table)]
			if row == nil {
				return nil, fmt.Errorf("fake: set on a missing row of %s", r.Table)
			}
			if _, err := row.State.Set(r.Name, r.Value); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("fake: op %v", r.Op)
		}
	}
	return out, nil
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
	return true
}

// put stores a row with one column set and returns its key.
func (f *fakeDB) put(t model.Table, content []byte, col string, v uint64) model.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.insertLocked(t, content)
	k := model.KeyOf(t, content)
	if col != "" {
		if _, err := f.rows[t][k].State.Set(col, v); err != nil {
			panic(err)
		}
	}
	return k
}

// col reads one column of a row, 0 when the row does not exist.
func (f *fakeDB) col(t model.Table, content []byte, col string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.rows[t][model.KeyOf(t, content)]; r != nil {
		return r.State.Col(col)
	}
	return 0
}
