package server_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// TestScanBefore: a scan with a cursor (wire.Request.Before) streams the
// newest rows numbered below it, newest first, up to its limit, for a
// table with a number index (receive) and one read whole (body); without
// one, the newest rows as before.
func TestScanBefore(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	c := e.Client(auth.Admin)
	ctx := ctxT(t)
	mb := model.KeyOf(model.Mailbox, []byte("jo@x.example"))
	for g := range 3 {
		var reqs []wire.Request
		for i := range 10 {
			var mail model.Key
			mail[0], mail[1] = byte(g), byte(i)
			reqs = append(reqs,
				wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: model.ReceiveContent(mail, mb)},
				wire.Request{Op: wire.OpFindOrInsert, Table: model.Body, Content: fmt.Appendf(nil, "body %d.%d", g, i)})
		}
		if _, err := c.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	wc := e.Dial(auth.Admin)
	id := uint32(0)
	scan := func(tb model.Table, limit, before uint64) []uint64 {
		t.Helper()
		id++
		var got []uint64
		for _, m := range askRaw(t, wc, id, &wire.Request{Op: wire.OpScan, Table: tb, Value: limit, Before: before}) {
			res, err := wire.DecodeAnswer(wire.OpScan, m.data)
			if errors.Is(err, wire.ErrEndOfStream) {
				break
			}
			if err != nil {
				t.Fatalf("scan %s below %d: %v", tb, before, err)
			}
			got = append(got, res.Row.RowNo)
		}
		return got
	}
	for _, tb := range []model.Table{model.Receive, model.Body} {
		all := scan(tb, 100, 0) // newest first
		if len(all) != 30 {
			t.Fatalf("scan %s: %d rows, want 30", tb, len(all))
		}
		for _, before := range []uint64{1, all[29], all[29] + 1, all[15], all[0], all[0] + 1, 1 << 62} {
			var want []uint64
			for _, n := range all {
				if n < before && len(want) < 7 {
					want = append(want, n)
				}
			}
			if got := scan(tb, 7, before); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("scan %s, 7 below %d = %v, want %v", tb, before, got, want)
			}
		}
		if got := scan(tb, 0, all[0]); len(got) != 0 {
			t.Errorf("scan %s, 0 below %d = %v, want none", tb, all[0], got)
		}
	}
}

// TestScanAllPastOnePage: a table of more rows than one scan answers
// (10000) is read whole by paging: every row once, newest first.
func TestScanAllPastOnePage(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	c := e.Client(auth.Admin)
	ctx := ctxT(t)
	const total = 10000 + 50
	var want []model.Key // oldest first
	for len(want) < total {
		var reqs []wire.Request
		for len(want) < total && len(reqs) < wire.MaxBatchOps {
			content := fmt.Appendf(nil, "change %d", len(want))
			want = append(want, model.KeyOf(model.Config, content))
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Config, Content: content})
		}
		if _, err := c.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := c.ScanKeysAll(ctx, model.Config, total)
	if err != nil {
		t.Fatalf("ScanKeysAll of %d config rows: %v", total, err)
	}
	if len(keys) != total {
		t.Fatalf("ScanKeysAll: %d keys, want %d", len(keys), total)
	}
	for i, k := range keys {
		if k != want[total-1-i] {
			t.Fatalf("ScanKeysAll key %d = %s, want %s (newest first, each once)", i, k, want[total-1-i])
		}
	}
}
