package backupdtest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
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
	Flag    uint64 // FlagMail: the flag column's value
}

// OpKind is what an Op does.
type OpKind int

// Kinds of Op.
const (
	Insert     OpKind = iota // find-or-insert
	Set                      // find-or-insert and set, one batch
	Increment                // find-or-insert and increment, one batch
	StoreMail                // a mail batch as smtpd sends it
	DeleteMail               // a mail batch and its receive row marked deleted (POP3 QUIT), one batch
	FlagMail                 // a mail batch and an IMAP flag column on its receive row, one batch
	numKinds
)

// flagColumns are the receive row columns FlagMail sets (imapd's \Seen and
// \Flagged): each value is a change time in milliseconds shifted left by
// one with the low bit "set", so the latest change wins.
var flagColumns = []string{"imap.flag.seen", "imap.flag.flagged"}

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
	case DeleteMail:
		// Only every third mail is ever deleted, so the check also sees
		// mails that must stay undeleted.
		o.Value = uint64(3 * rng.IntN(20))
	case FlagMail:
		o.Value = uint64(rng.IntN(60))
		o.Name = flagColumns[rng.IntN(len(flagColumns))]
		o.Flag = (1_800_000_000_000+uint64(rng.IntN(1_000_000)))<<1 | uint64(rng.IntN(2))
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
	deleted  map[model.Key]int // receive rows acknowledged deleted -> mail number
	// Uncertain counts increments whose answer was lost: they may or may
	// not count. Tests avoid them to check exact sums.
	Uncertain int
}

// NewExpect returns an empty record.
func NewExpect() *Expect {
	return &Expect{inserted: map[string]bool{}, cols: map[string]uint64{}, colsMax: map[string]uint64{},
		counters: map[string]uint64{}, mails: map[int]Mail{}, deleted: map[model.Key]int{}}
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
	case DeleteMail, FlagMail:
		m := NewMail(int(o.Value), "bob@example.org")
		name, v := model.ColDeleted, model.FlagSet
		if o.Kind == FlagMail {
			name, v = o.Name, o.Flag
		}
		k := model.Receive.String() + "/" + string(m.Recv) + "/" + name
		e.mu.Lock()
		e.colsMax[k] = max(e.colsMax[k], v)
		e.mu.Unlock()
		reqs := append(m.Batch(), wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{Content: m.Recv}, Name: name, Value: v})
		if _, err := c.Batch(ctx, reqs); err != nil {
			return err
		}
		e.mu.Lock()
		e.mails[int(o.Value)] = m
		e.cols[k] = max(e.cols[k], v)
		if o.Kind == DeleteMail {
			e.deleted[m.RecvKey] = int(o.Value)
		}
		e.mu.Unlock()
	}
	return nil
}

// Deleted returns the receive rows whose deletion was acknowledged.
func (e *Expect) Deleted() []model.Key {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Collect(maps.Keys(e.deleted))
}

// Counts returns how many rows, columns, counters, mails and deletions
// were acknowledged.
func (e *Expect) Counts() (rows, cols, counters, mails, deleted int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.inserted), len(e.cols), len(e.counters), len(e.mails), len(e.deleted)
}

// Check verifies a converged site: every acknowledged row is there; every
// column is at least its highest acknowledged value and at most the
// highest value tried; every counter equals the true sum of its
// increments (when none was uncertain; else at least it); every
// acknowledged mail is marked backed up; every acknowledged deletion is
// there (a column like the others: deleted is at least FlagSet).
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
		// A mail nobody tried to delete is not deleted.
		if e.colsMax[model.Receive.String()+"/"+string(m.Recv)+"/"+model.ColDeleted] == 0 {
			if got := get(model.Receive.String() + "/" + string(m.Recv)).State.Col(model.ColDeleted); got != 0 {
				t.Errorf("%s: mail %d deleted = %d, but no deletion was tried", site, i, got)
			}
		}
	}
}

func splitLast(s string) (string, string) {
	i := strings.LastIndexByte(s, '/')
	return s[:i], s[i+1:]
}
