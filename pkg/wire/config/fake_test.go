package config

import (
	"context"
	"fmt"
	"maps"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// fakeDB is an in-memory dbd: find-or-insert, set (only raises, needs the
// row) and atomic batches, as the store does them.
type fakeDB struct {
	rows  map[model.Table]map[model.Key]*wire.Row
	reads int
}

func newFakeDB() *fakeDB { return &fakeDB{rows: map[model.Table]map[model.Key]*wire.Row{}} }

func (f *fakeDB) FindKey(_ context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	f.reads++
	r, ok := f.rows[t][k]
	if !ok {
		return nil, client.ErrNotFound
	}
	c := *r
	c.State = model.State{Cols: maps.Clone(r.State.Cols)}
	return &c, nil
}

func (f *fakeDB) Rows(ctx context.Context, t model.Table) ([]wire.Row, error) {
	var out []wire.Row
	for k := range f.rows[t] {
		r, _ := f.FindKey(ctx, t, k)
		out = append(out, *r)
	}
	return out, nil
}

// Batch applies reqs all or nothing.
func (f *fakeDB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	next := map[model.Table]map[model.Key]*wire.Row{}
	for t, m := range f.rows {
		next[t] = map[model.Key]*wire.Row{}
		for k, r := range m {
			c := *r
			c.State = model.State{Cols: maps.Clone(r.State.Cols)}
			next[t][k] = &c
		}
	}
	for i, q := range reqs {
		switch q.Op {
		case wire.OpFindOrInsert:
			k := model.KeyOf(q.Table, q.Content)
			if next[q.Table] == nil {
				next[q.Table] = map[model.Key]*wire.Row{}
			}
			if _, ok := next[q.Table][k]; !ok {
				next[q.Table][k] = &wire.Row{Table: q.Table, Key: k, Content: append([]byte(nil), q.Content...), HasContent: true}
			}
		case wire.OpSet:
			r, ok := next[q.Table][q.Ref.KeyIn(q.Table)]
			if !ok {
				return nil, fmt.Errorf("request %d: set %s on a missing %s row: %w", i, q.Name, q.Table, client.ErrNotFound)
			}
			if _, err := r.State.Set(q.Name, q.Value); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("request %d: op %v", i, q.Op)
		}
	}
	f.rows = next
	return make([]wire.Result, len(reqs)), nil
}

// snapshot returns every row's content and columns, for comparing states.
func (f *fakeDB) snapshot() map[string]string {
	out := map[string]string{}
	for t, m := range f.rows {
		for k, r := range m {
			out[fmt.Sprintf("%s %s", t, k)] = fmt.Sprintf("%q %v", r.Content, r.State.Cols)
		}
	}
	return out
}
