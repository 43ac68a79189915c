package test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// TestRestartNoReplayNoLockout (TEST-CATALOG item 76) restarts a real dbd
// process with kill -9 while a recorded session is still inside the
// replay window (docs/wire.md §4.6):
//   - before the restart, the recorded session (message 1, requests that
//     insert a row and increment its counter, CLOSE) sent again is refused
//     at once: dbd sends nothing (replay cache);
//   - after the restart the cache is empty: dbd answers message 1 with at
//     most message 2 and closes the connection; no request of the
//     recording is served (the counter and `dbctl dump` are unchanged);
//   - sent a third time, to the restarted dbd, it is refused again (the
//     restarted cache holds it now);
//   - legitimate clients are not locked out: a pooled client whose
//     connections died with the old process, a new client with the same
//     key and a client of another role all work right after the restart.
func TestRestartNoReplayNoLockout(t *testing.T) {
	s := newSite(t)
	s.Start()
	ctx := proctest.Ctx(t, time.Minute)

	var mu sync.Mutex
	var recs []*proctest.RecordingConn
	kp, err := wire.LoadKeyPair(filepath.Join(s.Dir, "keys", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := client.New(client.Config{Addr: s.Addr, Static: kp, Server: s.Pub, Timeout: 20 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			rc := &proctest.RecordingConn{Conn: nc}
			mu.Lock()
			recs = append(recs, rc)
			mu.Unlock()
			return rc, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("row of the recorded session")
	if _, _, err := rec.FindOrInsert(ctx, model.Text, content); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := rec.Increment(ctx, model.Text, wire.Ref{Content: content}, "hits", 1); err != nil {
			t.Fatal(err)
		}
	}
	rec.Close() // sends CLOSE: a whole session
	mu.Lock()
	if len(recs) != 1 {
		t.Fatalf("the recorded session used %d connections, want 1", len(recs))
	}
	session := recs[0].Sent()
	mu.Unlock()

	pooled := s.NewClient("admin")
	hits := func(what string) {
		t.Helper()
		row, err := pooled.Find(ctx, model.Text, content)
		if err != nil || row.State.Counter("hits") != 2 {
			t.Fatalf("%s: row %+v, %v; want the counter at 2", what, row, err)
		}
	}
	hits("before the replays")
	before := s.Dbctl(nil, "dump")

	// dbd sends at most message 2 (it may be lost to the reset that
	// closing with unread bytes causes).
	replay := func(what string) int { return len(proctest.ReplayRecorded(t, s.Addr, session, what)) }
	if n := replay("same process"); n != 0 {
		t.Fatalf("same process: dbd sent %d bytes to a replayed message 1, want none", n)
	}

	s.Kill()
	s.Start()
	replay("after the restart") // message 2 may come, or be lost to the reset
	if n := replay("after the restart, again"); n != 0 {
		t.Fatalf("after the restart, again: dbd sent %d bytes, want none (cached since the first replay)", n)
	}
	hits("after the replays")
	if after := s.Dbctl(nil, "dump"); after != before {
		t.Fatalf("the replays changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// No lockout.
	if _, err := pooled.Increment(ctx, model.Text, wire.Ref{Content: content}, "hits", 1); err != nil {
		t.Fatalf("pooled client after the restart: %v", err)
	}
	fresh := s.NewClient("admin")
	if row, err := fresh.Find(ctx, model.Text, content); err != nil || row.State.Counter("hits") != 3 {
		t.Fatalf("new client with the same key after the restart: %+v, %v; want the counter at 3", row, err)
	}
	if _, _, err := s.NewClient("smtpd").FindOrInsert(ctx, model.Header, []byte("after the restart")); err != nil {
		t.Fatalf("smtpd client after the restart: %v", err)
	}
}
