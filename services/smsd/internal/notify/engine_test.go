package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smsd/internal/claim"
	"github.com/twinmx/twinmx/services/smsd/internal/gateway"
)

// rowDB is a fake dbd holding receive rows' states: Batch sets columns
// (merging by maximum, as dbd does) and FindMeta reads them. The
// embedded DB is nil: any other call panics, so the test shows which
// calls handle makes.
type rowDB struct {
	DB
	mu   sync.Mutex
	rows map[model.Key]map[string]uint64
}

func (d *rowDB) Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range reqs {
		if r.Op != wire.OpSet || r.Table != model.Receive {
			return nil, errors.New("rowDB: only sets on receive rows")
		}
		cols := d.rows[r.Ref.Key]
		if cols == nil {
			cols = map[string]uint64{}
			d.rows[r.Ref.Key] = cols
		}
		cols[r.Name] = max(cols[r.Name], r.Value)
	}
	return make([]wire.Result, len(reqs)), nil
}

func (d *rowDB) FindMeta(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := model.State{Cols: map[string]uint64{}}
	for n, v := range d.rows[k] {
		st.Cols[n] = v
	}
	return &wire.Row{Table: t, Key: k, State: st}, nil
}

func (d *rowDB) col(k model.Key, name string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rows[k][name]
}

// fakeSMS records sends and refuses the numbers in bad.
type fakeSMS struct {
	mu   sync.Mutex
	bad  map[string]bool
	sent []string
}

func (g *fakeSMS) Name() string { return "http" }

func (g *fakeSMS) Send(ctx context.Context, to, text string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bad[to] {
		return errors.New("gateway: answer 503 Service Unavailable: try later")
	}
	g.sent = append(g.sent, to)
	return nil
}

// TestOneBadTargetDoesNotBlockOthers: a rule with two numbers, the first
// (in sorted order) refused by the gateway every time. The other number
// used to get nothing: each attempt stopped at the first failure, and
// after MaxTries the row was given up for both.
func TestOneBadTargetDoesNotBlockOthers(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db := &rowDB{rows: map[model.Key]map[string]uint64{}}
	gw := &fakeSMS{bad: map[string]bool{"+4910000001": true}}
	e, err := New(Config{DB: db, Site: claim.SiteA, SMS: gw, MaxTries: 2, RetryMin: time.Second, RetryMax: time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	key := model.KeyOf(model.Receive, []byte("r1"))
	targets := []string{"+4910000001", "+4910000002"}
	send := func(ctx context.Context, to string) error { return gw.Send(ctx, to, "hi") }
	for try := 1; try <= 2; try++ {
		row, _ := db.FindMeta(context.Background(), model.Receive, key)
		j := &job{key: key, row: row, seen: now}
		next, err := e.handle(context.Background(), j, kindSMS, targets, "http", send)
		if err != nil {
			t.Fatalf("try %d: handle: %v", try, err)
		}
		if try == 1 && next.IsZero() {
			t.Fatal("a failed attempt asks for no retry")
		}
		now = now.Add(time.Minute)
	}
	if len(gw.sent) != 1 || gw.sent[0] != "+4910000002" {
		t.Errorf("sent to %q, want once to +4910000002", gw.sent)
	}
	if db.col(key, kindSMS.doneCol("+4910000002")) == 0 {
		t.Error("the good number is not confirmed")
	}
	if db.col(key, kindSMS.doneCol("+4910000001")) != 0 {
		t.Error("the refused number is confirmed")
	}
	if got := db.col(key, kindSMS.triesCol()); got != 2 {
		t.Errorf("tries = %d, want 2 (one per attempt)", got)
	}
	if db.col(key, kindSMS.goneCol("+4910000001")) == 0 {
		t.Error("the refused number is not given up after MaxTries")
	}
	if db.col(key, kindSMS.failedCol()) != 0 {
		t.Error("the whole kind is given up, not the refused number")
	}
}

// TestRateLimitHoldsOnlyItsNumber: a number at its rate limit waits; the
// other numbers of the same mail are sent now. The first held number
// used to end the attempt for all of them.
func TestRateLimitHoldsOnlyItsNumber(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db := &rowDB{rows: map[model.Key]map[string]uint64{}}
	gw := &fakeSMS{}
	lim := &gateway.Limiter{N: 1, Window: time.Hour}
	lim.Reserve("+4910000001", now.Add(-time.Minute)) // its one SMS this hour is used
	e, err := New(Config{DB: db, Site: claim.SiteA, SMS: gw, Limit: lim, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	key := model.KeyOf(model.Receive, []byte("r2"))
	row, _ := db.FindMeta(context.Background(), model.Receive, key)
	send := func(ctx context.Context, to string) error { return gw.Send(ctx, to, "hi") }
	next, err := e.handle(context.Background(), &job{key: key, row: row, seen: now}, kindSMS,
		[]string{"+4910000001", "+4910000002"}, "http", send)
	if err != nil {
		t.Fatal(err)
	}
	if len(gw.sent) != 1 || gw.sent[0] != "+4910000002" {
		t.Errorf("sent to %q, want +4910000002 now", gw.sent)
	}
	if next.IsZero() || !next.After(now) {
		t.Errorf("next look at %v, want a later look for the held number", next)
	}
	if db.col(key, kindSMS.doneCol("+4910000001")) != 0 {
		t.Error("the held number is confirmed")
	}
}

// slowSMS is a gateway whose every send takes step of the fake clock;
// before each send it may let the other site's claim replicate in.
type slowSMS struct {
	fakeSMS
	now    *time.Time
	step   time.Duration
	before func(n int)
}

func (g *slowSMS) Send(ctx context.Context, to, text string) error {
	if g.before != nil {
		g.before(len(g.sent))
	}
	*g.now = g.now.Add(g.step)
	return g.fakeSMS.Send(ctx, to, text)
}

// TestClaimRefreshedWhileSending: sending to several numbers through a
// slow gateway takes longer than the claim timeout. The claim was
// written once before the first send, so the other site took it over
// (and sent again) while this one was still sending. It is now
// refreshed on the way, and a newer claim of the other site seen then
// stops the sending.
func TestClaimRefreshedWhileSending(t *testing.T) {
	targets := []string{"+4910000001", "+4910000002", "+4910000003", "+4910000004"}
	run := func(t *testing.T, before func(db *rowDB, key model.Key, now time.Time, n int)) (*rowDB, *slowSMS, model.Key) {
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db := &rowDB{rows: map[model.Key]map[string]uint64{}}
		key := model.KeyOf(model.Receive, []byte("r3"))
		gw := &slowSMS{now: &now, step: 2 * time.Minute}
		if before != nil {
			gw.before = func(n int) { before(db, key, now, n) }
		}
		e, err := New(Config{DB: db, Site: claim.SiteA, SMS: gw, ClaimTimeout: 5 * time.Minute, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		row, _ := db.FindMeta(context.Background(), model.Receive, key)
		send := func(ctx context.Context, to string) error { return gw.Send(ctx, to, "hi") }
		if _, err := e.handle(context.Background(), &job{key: key, row: row, seen: now}, kindSMS, targets, "http", send); err != nil {
			t.Fatal(err)
		}
		return db, gw, key
	}
	t.Run("refreshed", func(t *testing.T) {
		var ages []time.Duration
		db, gw, key := run(t, func(db *rowDB, key model.Key, now time.Time, n int) {
			at, _, _ := claim.Decode(db.col(key, kindSMS.claimCol()))
			ages = append(ages, now.Sub(at))
		})
		if len(gw.sent) != len(targets) {
			t.Fatalf("sent to %q, want all of %q", gw.sent, targets)
		}
		for i, a := range ages {
			if a >= 5*time.Minute {
				t.Errorf("before send %d the claim is %v old: the other site takes it over", i, a)
			}
		}
		if _, owner, _ := claim.Decode(db.col(key, kindSMS.claimCol())); owner != claim.SiteA {
			t.Errorf("claim owner %v", owner)
		}
	})
	t.Run("lost", func(t *testing.T) {
		_, gw, _ := run(t, func(db *rowDB, key model.Key, now time.Time, n int) {
			if n == 1 {
				// During the second send a claim of B replicates in that
				// is newer than A's next refresh (a partition, or B's
				// clock ahead): A must stop.
				db.Batch(context.Background(), []wire.Request{{Op: wire.OpSet, Table: model.Receive,
					Ref: wire.Ref{ByKey: true, Key: key}, Name: kindSMS.claimCol(), Value: claim.Value(now.Add(5*time.Minute), claim.SiteB)}})
			}
		})
		if len(gw.sent) != 2 {
			t.Errorf("sent to %q after the other site claimed, want only the first two", gw.sent)
		}
	})
}
