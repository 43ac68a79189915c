package server_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestReplayedSessionChangesNothing (TEST-CATALOG item 62): the bytes a
// client sent in a whole session that wrote rows — message 1, the request
// frames, the CLOSE — sent again byte for byte on a fresh TCP connection
// change nothing in the store: the store's dump (rows, stamps, states,
// content digests) is identical before and after.
//
// The session increments a counter, which is not idempotent, so a replay
// that got as far as the store would show. It is replayed three times:
//   - to the same dbd: refused by the replay cache (reason replay), before
//     message 2;
//   - after a restart, which empties the replay cache (docs/wire.md §4.6):
//     dbd completes the handshake with a new ephemeral key, and the
//     recorded frames, made under the old session's keys, fail to decrypt;
//     no request is served;
//   - after a restart with dbd's clock past the window: refused (reason
//     clock-skew).
func TestReplayedSessionChangesNothing(t *testing.T) {
	d := startDBD(t, server.Config{})
	ctx := ctxT(t)

	var mu sync.Mutex
	var recs []*proctest.RecordingConn
	rec := d.client(d.admin, func(ctx context.Context, addr string) (net.Conn, error) {
		var dl net.Dialer
		nc, err := dl.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		rc := &proctest.RecordingConn{Conn: nc}
		mu.Lock()
		recs = append(recs, rc)
		mu.Unlock()
		return rc, nil
	})
	content := []byte("row written in the recorded session")
	ref := wire.Ref{Content: content}
	if _, _, err := rec.FindOrInsert(ctx, model.Text, content); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := rec.Increment(ctx, model.Text, ref, "hits", 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rec.Set(ctx, model.Text, ref, "flag", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: []byte("batched body")},
		{Op: wire.OpIncrement, Table: model.Text, Ref: ref, Name: "hits", Value: 10},
	}); err != nil {
		t.Fatal(err)
	}
	rec.Close() // sends CLOSE: the recording is a whole session
	d.waitIdle(0)
	mu.Lock()
	if len(recs) != 1 {
		t.Fatalf("the session used %d connections, want 1", len(recs))
	}
	session := recs[0].Sent()
	mu.Unlock()
	if len(session) < wire.LengthSize+wire.Msg1Size+6*(wire.LengthSize+wire.MinCiphertext) {
		t.Fatalf("recorded %d bytes: not message 1 and six requests", len(session))
	}
	row, err := d.client(d.admin, nil).Find(ctx, model.Text, content)
	if err != nil || row.State.Counter("hits") != 13 || row.State.Col("flag") != 4 {
		t.Fatalf("row after the recorded session = %+v, %v", row, err)
	}
	d.waitIdle(1)
	before := d.dump()

	// dbd ends the connection; what it sent before is message 2 at most
	// (it may be lost to the reset that closing with unread bytes causes).
	replay := func(what string) { proctest.ReplayRecorded(t, d.addr, session, what) }
	check := func(what string) {
		t.Helper()
		if after := d.dump(); after != before {
			t.Fatalf("%s: the store changed:\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	}

	replay("same dbd")
	d.waitFor("the replay refusal to be counted", func() bool { return d.failures(string(wire.ReasonReplay)) == 1 })
	if n := d.connections(); n != 2 {
		t.Fatalf("same dbd: %d connections accepted, want 2 (the recorded and the checking client's)", n)
	}
	check("same dbd")

	d.restart()
	replay("after a restart")
	d.waitFor("the replayed connection to be accepted", func() bool { return d.connections() == 1 })
	d.waitIdle(0)
	check("after a restart")
	if n := testutil.CollectAndCount(d.m.Requests); n != 0 {
		t.Fatalf("after a restart: dbd answered requests of the replayed session (%d series)", n)
	}
	if total, by := d.pastLimiter(); total != 0 {
		t.Fatalf("after a restart: handshake failures %v, want none (the cache is empty)", by)
	}

	d.restart()
	d.skew.Store(int64(2*wire.DefaultWindow + time.Second))
	replay("after the window")
	d.waitFor("the clock-skew refusal to be counted", func() bool { return d.failures(string(wire.ReasonClockSkew)) == 1 })
	if n := d.connections(); n != 0 {
		t.Fatalf("after the window: %d connections accepted, want 0", n)
	}
	check("after the window")
}
