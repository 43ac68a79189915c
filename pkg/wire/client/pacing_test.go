package client

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestUnreadStreamDoesNotStallRequests: a watch read with Next whose
// buffer is full (its caller is busy elsewhere) leaves its connection's
// reader waiting, by design; the one-shot requests and collected streams
// the caller makes meanwhile must still be answered. They waited behind
// the watch when they shared its connection: spamd's judge pushes the
// watch's throw-ins to workers that find and batch on the same Client,
// and with more than its buffers' worth pending, every worker's request
// timed out, one after another, while the watch waited for them.
func TestUnreadStreamDoesNotStallRequests(t *testing.T) {
	f := newFakeDBD(t)
	_, rows := mailsFixture()
	f.mails = func(*wire.Request) [][]byte { return [][]byte{rowsAnswer(rows), wire.AppendEnd(nil)} }
	c, ctx := fakeClient(t, f, Config{StreamBuffer: 2})
	st, err := c.Watch(ctx, model.ThrowIn, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The fake sends watchBurst events at once, and reads the next
	// request of the connection only after: an answer to it on the
	// watch's connection lies behind watchBurst-2 events with no room.
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(rctx); err != nil {
		t.Fatalf("ping while a watch is left unread: %v", err)
	}
	if _, err := c.Increment(rctx, model.Text, wire.Ref{Content: []byte("x")}, "n", 1); err != nil {
		t.Fatalf("increment while a watch is left unread: %v", err)
	}
	got, err := c.List(rctx, model.Receive, model.KeyOf(model.Mailbox, []byte("u")), 0, 10)
	if err != nil || !reflect.DeepEqual(got, rows) {
		t.Fatalf("list while a watch is left unread = %d rows, %v; want %d", len(got), err, len(rows))
	}
	// Back-pressure, not loss: every event is still there, in order.
	for want := uint64(0); want < watchBurst; want++ {
		row, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", want, err)
		}
		if row.RowNo != want {
			t.Fatalf("event with row %d, want %d", row.RowNo, want)
		}
	}
}

// TestRequestsAvoidStreamConnections: after the connection for requests
// is lost, the next request dials a new one rather than take the one of a
// watch read with Next, which its caller may leave unread; a watch handed
// to a func (WatchWhereFunc) shares the connection of the requests.
func TestRequestsAvoidStreamConnections(t *testing.T) {
	f := newFakeDBD(t)
	c, ctx := fakeClient(t, f, Config{StreamBuffer: 2})
	st, err := c.Watch(ctx, model.ThrowIn, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	events := make(chan uint64, watchBurst)
	hst, err := c.WatchWhereFunc(ctx, model.Receive, wire.WatchCond{With: "verdict"}, func(r *wire.Row) { events <- r.RowNo })
	if err != nil {
		t.Fatal(err)
	}
	defer hst.Close()
	if hst.call.s == st.call.s {
		t.Fatal("a watch handed to a func was put on the connection of a watch read with Next")
	}
	if n := f.accepts.Load(); n != 2 {
		t.Fatalf("a watch, a ping and a watch handed to a func used %d connections, want 2", n)
	}
	c.mu.Lock()
	ss := append([]*session(nil), c.sessions...)
	c.mu.Unlock()
	for _, s := range ss {
		if s != st.call.s {
			s.kill(errors.New("cut by the test"))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(rctx); err != nil {
		t.Fatalf("ping after the requests' connection was lost: %v", err)
	}
	if n := f.accepts.Load(); n != 3 {
		t.Fatalf("%d connections in all, want 3 (the ping's own again)", n)
	}
}

// TestOneConnectionSharesStreams: with OneConnection, streams read with
// Next share the one connection with requests (the stall an unread one
// causes there is documented at Config.OneConnection).
func TestOneConnectionSharesStreams(t *testing.T) {
	f := newFakeDBD(t)
	c, ctx := fakeClient(t, f, Config{OneConnection: true, StreamBuffer: 2 * watchBurst})
	st, err := c.Watch(ctx, model.ThrowIn, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.accepts.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
