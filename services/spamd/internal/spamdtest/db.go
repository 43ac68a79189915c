// Package spamdtest holds what spamd's unit tests share: an in-memory
// dbd. Only tests import it.
package spamdtest

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

// DB is an in-memory dbd: content-keyed rows, max-only columns, scans
// newest first, no watches. A batch is atomic, and a request dbd would
// refuse (a row with more than model.MaxColumns columns, a bad column
// name) fails it as bad-request, as dbd answers. It counts batches, so a
// test sees whether something was written. Safe for concurrent use.
type DB struct {
	mu      sync.Mutex
	rows    map[model.Table]map[model.Key]*wire.Row
	order   map[model.Table][]model.Key
	batches int
}

// NewDB returns an empty DB.
func NewDB() *DB {
	return &DB{rows: map[model.Table]map[model.Key]*wire.Row{}, order: map[model.Table][]model.Key{}}
}

// FindKey returns a copy of the row, or client.ErrNotFound.
func (f *DB) FindKey(_ context.Context, t model.Table, k model.Key) (*wire.Row, error) {
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

// ScanKeys returns the newest limit keys of table t, newest first.
func (f *DB) ScanKeys(_ context.Context, t model.Table, limit int) ([]model.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := slices.Clone(f.order[t])
	slices.Reverse(ks)
	return ks[:min(limit, len(ks))], nil
}

// Watch is not supported.
func (f *DB) Watch(context.Context, model.Table, []model.Key, bool) (*client.Stream, error) {
	return nil, errors.New("spamdtest: no watch")
}

// Batch applies find-or-insert and set requests, all or none.
func (f *DB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(reqs) > wire.MaxBatchOps {
		return nil, fmt.Errorf("spamdtest: batch of %d", len(reqs))
	}
	for _, r := range reqs {
		if r.Op == wire.OpSet && f.rows[r.Table][r.Ref.KeyIn(r.Table)] == nil && !inserts(reqs, r.Table, r.Ref.KeyIn(r.Table)) {
			return nil, fmt.Errorf("spamdtest: set on a missing row of %s", r.Table)
		}
	}
	// Apply to copies and keep them only if every request succeeds.
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
			out[i].New = insert(rows, order, r.Table, r.Content)
		case wire.OpSet:
			row := rows[r.Table][r.Ref.KeyIn(r.Table)]
			if _, err := row.State.Set(r.Name, r.Value); err != nil {
				return nil, &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("store: invalid request: %v", err)}
			}
		default:
			return nil, fmt.Errorf("spamdtest: op %v", r.Op)
		}
	}
	f.rows, f.order = rows, order
	f.batches++
	return out, nil
}

// Batches returns how many batches were applied.
func (f *DB) Batches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

// Insert stores a row (if missing) and returns its key.
func (f *DB) Insert(t model.Table, content []byte) model.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	insert(f.rows, f.order, t, content)
	return model.KeyOf(t, content)
}

// Set sets a column of an existing row; it panics if dbd would refuse.
func (f *DB) Set(t model.Table, k model.Key, col string, v uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.rows[t][k].State.Set(col, v); err != nil {
		panic(err)
	}
}

// Put stores a row with one column set (none if col is "") and returns
// its key.
func (f *DB) Put(t model.Table, content []byte, col string, v uint64) model.Key {
	k := f.Insert(t, content)
	if col != "" {
		f.Set(t, k, col, v)
	}
	return k
}

// Col reads one column of a row, 0 when the row does not exist.
func (f *DB) Col(t model.Table, content []byte, col string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.rows[t][model.KeyOf(t, content)]; r != nil {
		return r.State.Col(col)
	}
	return 0
}

func insert(rows map[model.Table]map[model.Key]*wire.Row, order map[model.Table][]model.Key, t model.Table, content []byte) bool {
	k := model.KeyOf(t, content)
	if rows[t] == nil {
		rows[t] = map[model.Key]*wire.Row{}
	}
	if rows[t][k] != nil {
		return false
	}
	rows[t][k] = &wire.Row{Table: t, Key: k, Content: slices.Clone(content), HasContent: true}
	order[t] = append(order[t], k)
	return true
}

// inserts reports whether reqs insert the row k of table t.
func inserts(reqs []wire.Request, t model.Table, k model.Key) bool {
	for _, r := range reqs {
		if r.Op == wire.OpFindOrInsert && r.Table == t && model.KeyOf(t, r.Content) == k {
			return true
		}
	}
	return false
}
