package test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/internal/store"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// checkStoreInvariants opens the data folder of a killed dbd directly and
// checks, through the store's read API, what the store test's
// checkInvariants checks from inside (TEST-CATALOG 78/80): each table's
// count equals its rows; row numbers are unique; the number index lists
// each row once (every entry names a row, as many entries as rows, no
// number twice); the change log has one entry per row, at the row's
// current stamp (bodies and headers get their column in the insert's
// batch and never change, but every batch raises its writer's register
// row, so a stale change-log entry of a changed row would show here too;
// TestCrashInvariants in the store covers that as well).
// It then writes one batch shaped like the crash test's (body, header,
// the header's ack column, so the test's own checks still hold) and
// requires row numbers above every earlier one: IMAP UIDs are
// derived from them and must never repeat. The parent index is not
// checked here: the crash workload writes no indexed rows (the store test
// checks it). dbd must not be running.
func checkStoreInvariants(t *testing.T, s *proctest.DB, round int) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: filepath.Join(s.Dir, "data"), Site: "check",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("after kill %d: open the store: %v", round, err)
	}
	defer st.Close()
	v, err := st.View()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[model.Table]map[uint64]model.Key{}
	stamps := map[model.Key]uint64{}
	err = v.Rows(func(r store.Row) error {
		if rows[r.Table] == nil {
			rows[r.Table] = map[uint64]model.Key{}
		}
		if other, dup := rows[r.Table][r.RowNo]; dup || r.RowNo == 0 {
			return fmt.Errorf("%s rows %s and %s share row number %d", r.Table, other, r.Key, r.RowNo)
		}
		rows[r.Table][r.RowNo] = r.Key
		stamps[r.Key] = r.Stamp // keys of different tables differ (KeyOf takes the table)
		return nil
	})
	if err == nil {
		for _, tb := range model.Tables() {
			if n := uint64(len(rows[tb])); st.Count(tb) != n {
				err = fmt.Errorf("%s: count %d, but %d rows", tb, st.Count(tb), n)
				break
			}
			seen := map[uint64]bool{}
			err = v.Newest(tb, math.MaxInt, func(r store.Row) error {
				if seen[r.RowNo] || rows[tb][r.RowNo] != r.Key {
					return fmt.Errorf("%s: number index lists row %s (number %d) twice or wrongly", tb, r.Key, r.RowNo)
				}
				seen[r.RowNo] = true
				return nil
			})
			if err == nil && len(seen) != len(rows[tb]) {
				err = fmt.Errorf("%s: number index lists %d of %d rows", tb, len(seen), len(rows[tb]))
			}
			if err != nil {
				break
			}
		}
	}
	if err == nil {
		// Changes gives the row an entry names, with the row's stamp: a
		// stale entry (at an old stamp) shows as a row listed twice.
		listed := map[model.Key]bool{}
		err = v.Changes(0, func(r store.Row) error {
			if listed[r.Key] {
				return fmt.Errorf("change log lists %s %s twice (stamp %d)", r.Table, r.Key, r.Stamp)
			}
			listed[r.Key] = true
			return nil
		})
		if n := len(listed); err == nil && n != len(stamps) {
			err = fmt.Errorf("change log has %d entries for %d rows", n, len(stamps))
		}
	}
	v.Close()
	if err != nil {
		t.Fatalf("after kill %d: %v", round, err)
	}
	maxNo := map[model.Table]uint64{}
	for tb, m := range rows {
		for no := range m {
			maxNo[tb] = max(maxNo[tb], no)
		}
	}
	body := []byte(fmt.Sprintf("probe after kill %d", round))
	header := []byte(fmt.Sprintf("probe header after kill %d", round))
	hk := model.KeyOf(model.Header, header)
	res, err := st.Apply(context.Background(), []store.Mutation{
		{Kind: store.Insert, Table: model.Body, Content: body},
		{Kind: store.Insert, Table: model.Header, Content: header},
		{Kind: store.Set, Table: model.Header, Key: hk, Name: "ack", Value: 1},
	})
	if err != nil {
		t.Fatalf("after kill %d: probe: %v", round, err)
	}
	if res[0].RowNo <= maxNo[model.Body] || res[1].RowNo <= maxNo[model.Header] {
		t.Fatalf("after kill %d: new rows got numbers %d, %d; not above %d, %d from before the kill",
			round, res[0].RowNo, res[1].RowNo, maxNo[model.Body], maxNo[model.Header])
	}
}
