package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// scanDBD serves scans of one table of rows numbered 2, 4, ... 2n (gaps,
// as merged rows leave them) as dbd does: up to min(limit, 10000) rows
// below the request's Before, newest first. older refuses a scan with a
// cursor as a dbd from before it does; stuck ignores the cursor.
type scanDBD struct {
	n            int
	older, stuck bool
	mu           sync.Mutex
	befores      []uint64 // each scan request's Before, in order
	limits       []uint64
}

func (s *scanDBD) answer(req *wire.Request) [][]byte {
	if req.Op != wire.OpScan {
		return [][]byte{wire.AppendError(nil, wire.CodeBadRequest, "not a scan")}
	}
	s.mu.Lock()
	s.befores = append(s.befores, req.Before)
	s.limits = append(s.limits, req.Value)
	s.mu.Unlock()
	if req.Before > 0 && s.older {
		return [][]byte{wire.AppendError(nil, wire.CodeBadRequest, "wire: malformed message: trailing bytes")}
	}
	var out [][]byte
	for i := s.n; i >= 1 && uint64(len(out)) < min(req.Value, scanPage); i-- {
		no := uint64(2 * i)
		if req.Before > 0 && no >= req.Before && !s.stuck {
			continue
		}
		r := wire.Row{Table: model.Config, Key: scanKey(no), RowNo: no}
		out = append(out, wire.AppendRow(wire.AppendEventHeader(nil), &r))
	}
	return append(out, wire.AppendEnd(nil))
}

func scanKey(no uint64) model.Key { return model.KeyOf(model.Config, fmt.Appendf(nil, "row %d", no)) }

// TestScanAll: ScanAll pages from the newest row to the oldest, each page
// below the smallest row number of the one before, and hands out every
// row once up to its bound; a table over the bound, a dbd too old to page
// and a dbd that does not move on are errors, never a short answer.
func TestScanAll(t *testing.T) {
	for _, tc := range []struct {
		name          string
		n, bound      int
		older, stuck  bool
		wantRows      int
		wantBefores   []uint64
		wantErr       error  // errors.Is
		wantErrSubstr string // in the error's text
	}{
		{name: "one short page", n: 7, bound: 100, wantRows: 7, wantBefores: []uint64{0}},
		{name: "three pages", n: 25003, bound: 100000, wantRows: 25003, wantBefores: []uint64{0, 30008, 10008}},
		{name: "exactly the bound", n: 20000, bound: 20000, wantRows: 20000, wantBefores: []uint64{0, 20002, 2}},
		{name: "one over the bound", n: 20001, bound: 20000, wantRows: 20000, wantBefores: []uint64{0, 20004, 4},
			wantErr: ErrScanBound},
		{name: "bound below a page", n: 50, bound: 10, wantRows: 10, wantBefores: []uint64{0}, wantErr: ErrScanBound},
		{name: "dbd too old to page", n: 15000, bound: 100000, older: true, wantRows: 10000, wantBefores: []uint64{0, 10002},
			wantErr: ErrScanTooOld, wantErrSubstr: "dbd too old to page a scan"},
		{name: "dbd too old, one page enough", n: 9999, bound: 100000, older: true, wantRows: 9999, wantBefores: []uint64{0}},
		{name: "dbd ignores the cursor", n: 15000, bound: 100000, stuck: true, wantRows: 10000, wantBefores: []uint64{0, 10002},
			wantErr: wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scanDBD{n: tc.n, older: tc.older, stuck: tc.stuck}
			d := startTruncDBD(t, &truncDBD{answer: s.answer, step: 1 << 20, trunc: func(int64) bool { return false }})
			c := newTestClient(t, d.ln.Addr().String(), d.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got []uint64
			err := c.ScanAll(ctx, model.Config, tc.bound, func(r *wire.Row) error {
				if r.Key != scanKey(r.RowNo) {
					t.Errorf("row %d has key %s", r.RowNo, r.Key)
				}
				got = append(got, r.RowNo)
				return nil
			})
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("ScanAll error %v, want %v", err, tc.wantErr)
			case tc.wantErrSubstr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) || !isCode(err, wire.CodeBadRequest)):
				t.Errorf("ScanAll error %v, want one saying %q and wrapping dbd's bad-request", err, tc.wantErrSubstr)
			case tc.wantErr == nil && tc.wantErrSubstr == "" && err != nil:
				t.Errorf("ScanAll error %v", err)
			}
			if len(got) != tc.wantRows {
				t.Fatalf("ScanAll handed out %d rows, want %d", len(got), tc.wantRows)
			}
			for i, no := range got {
				if want := uint64(2 * (tc.n - i)); no != want {
					t.Fatalf("row %d of the scan is number %d, want %d (newest first, each once)", i, no, want)
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if fmt.Sprint(s.befores) != fmt.Sprint(tc.wantBefores) {
				t.Errorf("scans asked below %v, want %v", s.befores, tc.wantBefores)
			}
			for _, l := range s.limits {
				if l == 0 || l > scanPage {
					t.Errorf("a scan asked for %d rows, want 1 to %d", l, scanPage)
				}
			}
		})
	}
}

// TestScanAllCanceled: ScanAll stops at its context's end, between
// pages too, with the context's error.
func TestScanAllCanceled(t *testing.T) {
	s := &scanDBD{n: 25000}
	d := startTruncDBD(t, &truncDBD{answer: s.answer, step: 1 << 20, trunc: func(int64) bool { return false }})
	c := newTestClient(t, d.ln.Addr().String(), d.key.Public, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := c.ScanAll(ctx, model.Config, 100000, func(*wire.Row) error {
		if n++; n == scanPage {
			cancel() // the last row of the first page
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != scanPage {
		t.Errorf("ScanAll canceled after the first page: error %v after %d rows, want context.Canceled after %d", err, n, scanPage)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.befores) != 1 {
		t.Errorf("%d scans asked, want 1", len(s.befores))
	}
}

// TestScanKeysAll: the keys of every row, newest first; the old request
// form (no cursor) for the first page.
func TestScanKeysAll(t *testing.T) {
	s := &scanDBD{n: 10001}
	d := startTruncDBD(t, &truncDBD{answer: s.answer, step: 1 << 20, trunc: func(int64) bool { return false }})
	c := newTestClient(t, d.ln.Addr().String(), d.key.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := c.ScanKeysAll(ctx, model.Config, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 10001 || keys[0] != scanKey(20002) || keys[10000] != scanKey(2) {
		t.Errorf("ScanKeysAll: %d keys, want 10001, newest first", len(keys))
	}
	if _, err := c.ScanKeysAll(ctx, model.Config, 10000); !errors.Is(err, ErrScanBound) {
		t.Errorf("ScanKeysAll of 10001 rows bounded at 10000: error %v, want ErrScanBound", err)
	}
}
