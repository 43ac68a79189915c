package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// mailsFixture is two mails' rows as dbd would send them: each mail's
// receive row first.
func mailsFixture() (keys []model.Key, rows []wire.Row) {
	for i, name := range []string{"a", "b"} {
		k := model.KeyOf(model.Receive, []byte(name))
		keys = append(keys, k)
		rows = append(rows,
			wire.Row{Table: model.Receive, Key: k, RowNo: uint64(i + 1), HasContent: true, Content: []byte("pair " + name)},
			wire.Row{Table: model.Header, Key: model.KeyOf(model.Header, []byte(name)), RowNo: uint64(i + 1), HasContent: true, Content: []byte("Subject: " + name + "\r\n")},
			wire.Row{Table: model.Body, Key: model.KeyOf(model.Body, []byte(name)), RowNo: uint64(i + 1), HasContent: true, Content: []byte("body " + name)},
		)
	}
	for i := range rows {
		rows[i].Size = uint64(len(rows[i].Content)) // as decoded
	}
	return keys, rows
}

func rowsAnswer(rows []wire.Row) []byte {
	b := wire.AppendRowsHeader(nil, len(rows))
	for i := range rows {
		b = wire.AppendRow(b, &rows[i])
	}
	return b
}

func eventAnswers(rows []wire.Row) [][]byte {
	var out [][]byte
	for i := range rows {
		out = append(out, wire.AppendRow(wire.AppendEventHeader(nil), &rows[i]))
	}
	return out
}

func wantByKey(rows []wire.Row) map[model.Key][]wire.Row {
	out := map[model.Key][]wire.Row{}
	var cur model.Key
	for _, r := range rows {
		if r.Table == model.Receive {
			cur = r.Key
		}
		out[cur] = append(out[cur], r)
	}
	return out
}

// TestMailsRowsPacked: MailsRows asks for packed rows and reads them from
// rows answers, also when a mail's rows are split over two of them, to
// the same map as from one event a row.
func TestMailsRowsPacked(t *testing.T) {
	keys, rows := mailsFixture()
	f := newFakeDBD(t)
	var mu sync.Mutex
	var asked []bool
	f.mails = func(req *wire.Request) [][]byte {
		mu.Lock()
		asked = append(asked, req.Flag)
		mu.Unlock()
		if !req.Flag {
			return append(eventAnswers(rows), wire.AppendEnd(nil))
		}
		// The first mail and the start of the second, then the rest.
		return [][]byte{rowsAnswer(rows[:4]), rowsAnswer(rows[4:]), wire.AppendEnd(nil)}
	}
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.MailsRows(ctx, keys, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantByKey(rows); !reflect.DeepEqual(got, want) {
		t.Fatalf("MailsRows = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(asked, []bool{true}) {
		t.Fatalf("requests asked packed: %v, want [true]", asked)
	}
}

// TestMailsRowsOlderDBD: a dbd older than the packed flag refuses the
// request as bad-request; MailsRows asks again without the flag, gets one
// event a row, and asks without it from then on.
func TestMailsRowsOlderDBD(t *testing.T) {
	keys, rows := mailsFixture()
	f := newFakeDBD(t)
	var mu sync.Mutex
	var asked []bool
	f.mails = func(req *wire.Request) [][]byte {
		mu.Lock()
		asked = append(asked, req.Flag)
		mu.Unlock()
		if req.Flag {
			return [][]byte{wire.AppendError(nil, wire.CodeBadRequest, "wire: malformed message: trailing bytes")}
		}
		return append(eventAnswers(rows), wire.AppendEnd(nil))
	}
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		got, err := c.MailsRows(ctx, keys, 0)
		if err != nil {
			t.Fatalf("MailsRows #%d: %v", i+1, err)
		}
		if want := wantByKey(rows); !reflect.DeepEqual(got, want) {
			t.Fatalf("MailsRows #%d = %v, want %v", i+1, got, want)
		}
	}
	if !reflect.DeepEqual(asked, []bool{true, false, false}) {
		t.Fatalf("requests asked packed: %v, want [true false false]", asked)
	}
}

// TestMailsHeadsOlderDBD: MailsHeadsPooled asks for body rows without
// content; a dbd older than wire.MailsNoBody refuses it as bad-request,
// and the Client asks again for whole rows (packed), and so from then on
// (a call of MailsRowsPooled never asks without bodies); a dbd older than
// any flag gets unpacked requests at last. Against a dbd that knows the
// flag, the request carries it.
func TestMailsHeadsOlderDBD(t *testing.T) {
	type asked struct{ packed, noBody bool }
	for _, tc := range []struct {
		name  string
		knows func(*wire.Request) bool // what the fake dbd accepts
		want  []asked                  // two calls of MailsHeadsPooled, then one of MailsRowsPooled
	}{
		{"knows no body", func(*wire.Request) bool { return true },
			[]asked{{true, true}, {true, true}, {true, false}}},
		{"knows packed only", func(r *wire.Request) bool { return !r.NoBody },
			[]asked{{true, true}, {true, false}, {true, false}, {true, false}}},
		{"knows no flags", func(r *wire.Request) bool { return !r.NoBody && !r.Flag },
			[]asked{{true, true}, {true, false}, {false, false}, {false, false}, {false, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, rows := mailsFixture()
			f := newFakeDBD(t)
			var mu sync.Mutex
			var got []asked
			f.mails = func(req *wire.Request) [][]byte {
				mu.Lock()
				got = append(got, asked{req.Flag, req.NoBody})
				mu.Unlock()
				if !tc.knows(req) {
					return [][]byte{wire.AppendError(nil, wire.CodeBadRequest, "wire: malformed message: mails: unknown flags")}
				}
				if !req.Flag {
					return append(eventAnswers(rows), wire.AppendEnd(nil))
				}
				return [][]byte{rowsAnswer(rows), wire.AppendEnd(nil)}
			}
			c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i, call := range []func(context.Context, []model.Key, uint64) (map[model.Key][]wire.Row, func(), error){
				c.MailsHeadsPooled, c.MailsHeadsPooled, c.MailsRowsPooled,
			} {
				byKey, release, err := call(ctx, keys, 0)
				if err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if want := wantByKey(rows); !reflect.DeepEqual(byKey, want) {
					t.Fatalf("call %d = %v, want %v", i+1, byKey, want)
				}
				release()
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("requests (packed, no body): %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMailsRowsMalformedRows: a rows answer that does not decode fails
// MailsRows with ErrMalformed, never a partial map.
func TestMailsRowsMalformedRows(t *testing.T) {
	keys, rows := mailsFixture()
	good := rowsAnswer(rows)
	for _, tc := range []struct {
		name string
		ans  []byte
	}{
		{"truncated", good[:len(good)-3]},
		{"count above its rows", append(wire.AppendRowsHeader(nil, len(rows)+1), good[2:]...)},
		{"no rows", wire.AppendRowsHeader(nil, 0)},
		{"trailing byte", append(good[:len(good):len(good)], 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDBD(t)
			f.mails = func(*wire.Request) [][]byte { return [][]byte{tc.ans, wire.AppendEnd(nil)} }
			c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := c.MailsRows(ctx, keys, 0)
			if !errors.Is(err, wire.ErrMalformed) || got != nil {
				t.Fatalf("MailsRows = %v, %v; want ErrMalformed", got, err)
			}
		})
	}
}

// TestListPacked: List asks for packed rows and reads them from rows
// answers to the same rows as from one event a row; a dbd older than the
// flag refuses it as bad-request, and List asks again without the flag
// and without it from then on, until a new connection.
func TestListPacked(t *testing.T) {
	_, rows := mailsFixture()
	parent := model.KeyOf(model.Mailbox, []byte("u"))
	for _, tc := range []struct {
		name  string
		older bool
		asked []bool
	}{
		{"packed", false, []bool{true, true}},
		{"older dbd", true, []bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDBD(t)
			var mu sync.Mutex
			var asked []bool
			f.mails = func(req *wire.Request) [][]byte {
				mu.Lock()
				asked = append(asked, req.Flag)
				mu.Unlock()
				switch {
				case req.Flag && tc.older:
					return [][]byte{wire.AppendError(nil, wire.CodeBadRequest, "wire: malformed message: trailing bytes")}
				case req.Flag:
					return [][]byte{rowsAnswer(rows[:2]), rowsAnswer(rows[2:]), wire.AppendEnd(nil)}
				}
				return append(eventAnswers(rows), wire.AppendEnd(nil))
			}
			c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 2 {
				got, err := c.List(ctx, model.Receive, parent, 0, 100)
				if err != nil {
					t.Fatalf("List #%d: %v", i+1, err)
				}
				if !reflect.DeepEqual(got, rows) {
					t.Fatalf("List #%d = %v, want %v", i+1, got, rows)
				}
			}
			if !reflect.DeepEqual(asked, tc.asked) {
				t.Fatalf("requests asked packed: %v, want %v", asked, tc.asked)
			}
		})
	}
}

// TestMailsRowsPooled: answers read into pooled frame buffers stay intact
// until given back, with calls in parallel on one connection giving back
// and reusing buffers all the while: a buffer handed to two answers at
// once, or reused while handed out, shows as another answer's bytes.
// Each mail's rows come in a frame of their own, large (pooled) or small
// (copied out).
func TestMailsRowsPooled(t *testing.T) {
	var keys []model.Key
	var rows []wire.Row
	for i := range 6 {
		name := fmt.Sprint("mail", i)
		k := model.KeyOf(model.Receive, []byte(name))
		body := bytes.Repeat([]byte{byte('a' + i)}, (i%2)*50<<10+100) // odd mails fill most of a frame
		keys = append(keys, k)
		rows = append(rows,
			wire.Row{Table: model.Receive, Key: k, RowNo: uint64(i + 1), HasContent: true, Content: []byte("pair " + name)},
			wire.Row{Table: model.Body, Key: model.KeyOf(model.Body, body), RowNo: uint64(i + 1), HasContent: true, Content: body},
		)
	}
	for i := range rows {
		rows[i].Size = uint64(len(rows[i].Content))
	}
	f := newFakeDBD(t)
	f.mails = func(req *wire.Request) [][]byte {
		var out [][]byte
		for i := 0; i < len(rows); i += 2 {
			out = append(out, rowsAnswer(rows[i:i+2]))
		}
		return append(out, wire.AppendEnd(nil))
	}
	c := newTestClient(t, f.ln.Addr().String(), f.key.Public, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := wantByKey(rows)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for i := range 30 {
				got, release, err := c.MailsRowsPooled(ctx, keys, 0)
				if err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("MailsRowsPooled #%d: rows differ", i)
					return
				}
				release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
