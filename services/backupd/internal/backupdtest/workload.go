package backupdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Op is one random write of the convergence tests.
type Op struct {
	Kind    OpKind
	Table   model.Table
	Content []byte
	Name    string // column or counter
	Value   uint64 // column value, counter delta, or mail number
}

// OpKind is what an Op does.
type OpKind int

// Kinds of Op.
const (
	Insert    OpKind = iota // find-or-insert
	Set                     // find-or-insert and set, one batch
	Increment               // find-or-insert and increment, one batch
	StoreMail               // a mail batch as smtpd sends it
	numKinds
)

var tables = []model.Table{model.Body, model.Header, model.Text, model.RDNS, model.Config}

// RandomOp picks an operation on a small pool of contents, so that sites
// often write the same rows at the same time.
func RandomOp(rng *rand.Rand) Op {
	o := Op{Kind: OpKind(rng.IntN(int(numKinds))), Table: tables[rng.IntN(len(tables))]}
	o.Content = fmt.Appendf(nil, "content %d", rng.IntN(40))
	switch o.Kind {
	case Set:
		o.Name = fmt.Sprintf("col%d", rng.IntN(3))
		o.Value = uint64(1 + rng.IntN(1000))
	case Increment:
		o.Name = fmt.Sprintf("ctr%d", rng.IntN(2))
		o.Value = uint64(1 + rng.IntN(10))
	case StoreMail:
		o.Value = uint64(rng.IntN(60))
	}
	return o
}

// Expect records the writes made, to check converged sites against them.
// Safe for concurrent use.
type Expect struct {
	mu       sync.Mutex
	inserted map[string]bool   // acknowledged rows: table "/" content
	cols     map[string]uint64 // row "/" column -> highest acknowledged value
	colsMax  map[string]uint64 // row "/" column -> highest value tried
	counters map[string]uint64 // row "/" counter -> sum of deltas
	mails    map[int]Mail      // acknowledged mails
	// Uncertain counts increments whose answer was lost: they may or may
	// not count. Tests avoid them to check exact sums.
	Uncertain int
}

// NewExpect returns an empty record.
func NewExpect() *Expect {
	return &Expect{inserted: map[string]bool{}, cols: map[string]uint64{}, colsMax: map[string]uint64{},
		counters: map[string]uint64{}, mails: map[int]Mail{}}
}

// Apply performs o with c (admin role) and records it; an error means not
// acknowledged.
func (e *Expect) Apply(ctx context.Context, c *client.Client, o Op) error {
	id := o.Table.String() + "/" + string(o.Content)
	switch o.Kind {
	case Insert:
		if _, _, err := c.FindOrInsert(ctx, o.Table, o.Content); err != nil {
			return err
		}
		e.mu.Lock()
		e.inserted[id] = true
		e.mu.Unlock()
	case Set, Increment:
		req := wire.Request{Op: wire.OpSet, Table: o.Table, Ref: wire.Ref{Content: o.Content}, Name: o.Name, Value: o.Value}
		if o.Kind == Increment {
			req.Op = wire.OpIncrement
		}
		k := id + "/" + o.Name
		if o.Kind == Set {
			e.mu.Lock()
			e.colsMax[k] = max(e.colsMax[k], o.Value)
			e.mu.Unlock()
		}
		// Insert and update in one batch, so the update always finds its row.
		_, err := c.Batch(ctx, []wire.Request{{Op: wire.OpFindOrInsert, Table: o.Table, Content: o.Content}, req})
		e.mu.Lock()
		defer e.mu.Unlock()
		if err != nil {
			if o.Kind == Increment {
				e.Uncertain++
			}
			return err
		}
		e.inserted[id] = true
		if o.Kind == Set {
			e.cols[k] = max(e.cols[k], o.Value)
		} else {
			e.counters[k] += o.Value
		}
	case StoreMail:
		m := NewMail(int(o.Value), "bob@example.org")
		if _, err := c.Batch(ctx, m.Batch()); err != nil {
			return err
		}
		e.mu.Lock()
		e.mails[int(o.Value)] = m
		e.mu.Unlock()
	}
	return nil
}

// Counts returns how many rows, columns, counters and mails were
// acknowledged.
func (e *Expect) Counts() (rows, cols, counters, mails int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.inserted), len(e.cols), len(e.counters), len(e.mails)
}

// Check verifies a converged site: every acknowledged row is there; every
// column is at least its highest acknowledged value and at most the
// highest value tried; every counter equals the true sum of its
// increments (when none was uncertain; else at least it); every
// acknowledged mail is marked backed up.
func (e *Expect) Check(t testing.TB, ctx context.Context, site string, c *client.Client) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	rows := map[string]*wire.Row{}
	get := func(id string) *wire.Row {
		if r, ok := rows[id]; ok {
			return r
		}
		name, content, _ := strings.Cut(id, "/")
		tb, err := model.ParseTable(name)
		if err != nil {
			t.Fatalf("bad row id %q", id)
		}
		r, err := c.Find(ctx, tb, []byte(content))
		if err != nil {
			t.Fatalf("%s: acknowledged row %s: %v", site, id, err)
		}
		rows[id] = r
		return r
	}
	for id := range e.inserted {
		get(id)
	}
	for k, v := range e.cols {
		id, col := splitLast(k)
		if got := get(id).State.Col(col); got < v || got > e.colsMax[k] {
			t.Errorf("%s: %s column %s = %d, want %d (at most %d)", site, id, col, got, v, e.colsMax[k])
		}
	}
	for k, v := range e.counters {
		id, ctr := splitLast(k)
		got := get(id).State.Counter(ctr)
		if got != v && (e.Uncertain == 0 || got < v) {
			t.Errorf("%s: %s counter %s = %d, want the true sum %d", site, id, ctr, got, v)
		}
	}
	for i, m := range e.mails {
		if ok, err := Marked(ctx, c, m); err != nil || !ok {
			t.Errorf("%s: mail %d marked %v, %v", site, i, ok, err)
		}
	}
}

func splitLast(s string) (string, string) {
	i := strings.LastIndexByte(s, '/')
	return s[:i], s[i+1:]
}
