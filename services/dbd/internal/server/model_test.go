package server_test

import (
	"bytes"
	"context"
	"errors"

	"io"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"pgregory.net/rapid"
)

// modelRow is the in-memory model of one row.
type modelRow struct {
	content []byte
	rowNo   uint64
	cols    map[string]uint64
	ctrs    map[string]uint64 // this site's count only: one dbd
}

// dbModel is what dbd should hold after the same operations (the
// metamorphic "model" of TEST-CATALOG 78/80 and Pebble's own tests).
type dbModel struct {
	rows   map[model.Table]map[model.Key]*modelRow
	nextNo map[model.Table]uint64
}

func (m *dbModel) get(t model.Table, k model.Key) *modelRow { return m.rows[t][k] }

func (m *dbModel) insert(t model.Table, content []byte) (uint64, bool) {
	k := model.KeyOf(t, content)
	if r := m.get(t, k); r != nil {
		return r.rowNo, false
	}
	if m.rows[t] == nil {
		m.rows[t] = map[model.Key]*modelRow{}
	}
	m.nextNo[t]++
	m.rows[t][k] = &modelRow{content: bytes.Clone(content), rowNo: m.nextNo[t], cols: map[string]uint64{}, ctrs: map[string]uint64{}}
	return m.nextNo[t], true
}

// TestModelBased runs random operations, with dbd restarts, against dbd
// over the wire and against dbModel, and compares every answer.
func TestModelBased(t *testing.T) {
	tables := []model.Table{model.Body, model.Receive, model.Text}
	contents := []string{"", "a", "b", "hello world", "\x00\xff", "long " + string(bytes.Repeat([]byte("0123456789"), 7000)) /* 70 kB: several frames */}
	names := []string{"ack", "verdict", "n"}
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		e := dbdtest.Start(t, dbdtest.Options{Dir: dir})
		c := e.Client(auth.Admin)
		m := &dbModel{rows: map[model.Table]map[model.Key]*modelRow{}, nextNo: map[model.Table]uint64{}}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		genT := rapid.SampledFrom(tables)
		genC := rapid.SampledFrom(contents)
		genN := rapid.SampledFrom(names)
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			tb, content := genT.Draw(rt, "table"), []byte(genC.Draw(rt, "content"))
			key := model.KeyOf(tb, content)
			switch op := rapid.IntRange(0, 5).Draw(rt, "op"); op {
			case 0: // find-or-insert
				no, isNew, err := c.FindOrInsert(ctx, tb, content)
				wantNo, wantNew := m.insert(tb, content)
				if err != nil || no != wantNo || isNew != wantNew {
					rt.Fatalf("find-or-insert %s %q = %d %v %v; model %d %v", tb, content, no, isNew, err, wantNo, wantNew)
				}
			case 1: // find
				row, err := c.Find(ctx, tb, content)
				checkRow(rt, m.get(tb, key), row, err)
			case 2, 3: // set / increment
				name, v := genN.Draw(rt, "name"), rapid.Uint64Range(0, 5).Draw(rt, "value")
				var err error
				ref := wire.Ref{ByKey: true, Key: key}
				if op == 2 {
					_, err = c.Set(ctx, tb, ref, name, v)
				} else {
					_, err = c.Increment(ctx, tb, ref, name, v)
				}
				mr := m.get(tb, key)
				if mr == nil {
					if !errors.Is(err, client.ErrNotFound) {
						rt.Fatalf("update of missing row: %v, want ErrNotFound", err)
					}
					continue
				}
				if err != nil {
					rt.Fatalf("update: %v", err)
				}
				if op == 2 {
					mr.cols[name] = max(mr.cols[name], v)
				} else {
					mr.ctrs[name] += v
				}
			case 4: // batch: insert then set the same row
				name := genN.Draw(rt, "name")
				res, err := c.Batch(ctx, []wire.Request{
					{Op: wire.OpFindOrInsert, Table: tb, Content: content},
					{Op: wire.OpSet, Table: tb, Ref: wire.Ref{Content: content}, Name: name, Value: 9},
				})
				wantNo, wantNew := m.insert(tb, content)
				if err != nil || res[0].RowNo != wantNo || res[0].New != wantNew || res[1].NotFound {
					rt.Fatalf("batch = %+v, %v; model %d %v", res, err, wantNo, wantNew)
				}
				m.get(tb, key).cols[name] = 9
			case 5: // restart dbd on the same data
				e.Stop()
				e = dbdtest.Start(t, dbdtest.Options{Dir: dir})
				c = e.Client(auth.Admin)
			}
		}
		// Finally every row of the model must be in dbd, and no other.
		st, err := c.Dump(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		defer st.Close()
		n := 0
		for {
			r, err := st.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rt.Fatal(err)
			}
			n++
			if m.get(r.Table, r.Key) == nil {
				rt.Fatalf("dump has row %s %s that the model lacks", r.Table, r.Key)
			}
		}
		want := 0
		for _, rows := range m.rows {
			want += len(rows)
		}
		if n != want {
			rt.Fatalf("dump has %d rows, model %d", n, want)
		}
		e.Stop()
	})
}

func checkRow(rt *rapid.T, want *modelRow, got *wire.Row, err error) {
	if want == nil {
		if !errors.Is(err, client.ErrNotFound) {
			rt.Fatalf("find of a missing row = %v, want ErrNotFound", err)
		}
		return
	}
	if err != nil {
		rt.Fatalf("find: %v", err)
	}
	if !bytes.Equal(got.Content, want.content) || got.RowNo != want.rowNo {
		rt.Fatalf("find: content %d bytes rowno %d; model %d bytes rowno %d", len(got.Content), got.RowNo, len(want.content), want.rowNo)
	}
	for n, v := range want.cols {
		if got.State.Col(n) != v {
			rt.Fatalf("column %s = %d, model %d", n, got.State.Col(n), v)
		}
	}
	for n, v := range want.ctrs {
		if got.State.Counter(n) != v {
			rt.Fatalf("counter %s = %d, model %d", n, got.State.Counter(n), v)
		}
	}
	if len(got.State.Cols) != countNonZero(want.cols) {
		rt.Fatalf("dbd has columns %v, model %v", got.State.Cols, want.cols)
	}
}

func countNonZero(m map[string]uint64) int {
	n := 0
	for _, v := range m {
		if v != 0 {
			n++
		}
	}
	return n
}
