package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/smtpd/internal/deliver"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
)

// TestDBReply: the one mapping of dbd failures to replies. A no-space
// answer, however wrapped, is 452 4.3.1 and marks dbd full; any other
// failure is the caller's fallback and marks nothing.
func TestDBReply(t *testing.T) {
	noSpace := &wire.Error{Code: wire.CodeNoSpace, Msg: "dbd's disk is full"}
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantEnh  smtp.EnhancedCode
		wantFull bool
	}{
		{"no-space", noSpace, 452, smtp.EnhancedCode{4, 3, 1}, true},
		{"no-space wrapped", fmt.Errorf("store mail k: batch: %w", noSpace), 452, smtp.EnhancedCode{4, 3, 1}, true},
		{"unavailable", &wire.Error{Code: wire.CodeUnavailable}, 451, smtp.EnhancedCode{4, 3, 0}, false},
		{"internal", &wire.Error{Code: wire.CodeInternal}, 451, smtp.EnhancedCode{4, 3, 0}, false},
		{"connection lost", fmt.Errorf("batch: %w", client.ErrConnLost), 451, smtp.EnhancedCode{4, 3, 0}, false},
		{"timeout", context.DeadlineExceeded, 451, smtp.EnhancedCode{4, 3, 0}, false},
	}
	now := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			s := &Session{b: &Backend{cfg: Config{Now: func() time.Time { return now }, Metrics: m}, full: fullMark{hold: time.Second}}}
			got := s.dbReply(tt.err, errTempStore)
			if got.Code != tt.wantCode || got.EnhancedCode != tt.wantEnh {
				t.Errorf("dbReply(%v) = %d %v, want %d %v", tt.err, got.Code, got.EnhancedCode, tt.wantCode, tt.wantEnh)
			}
			if full := s.b.full.full(now); full != tt.wantFull {
				t.Errorf("after dbReply(%v): full = %v, want %v", tt.err, full, tt.wantFull)
			}
			if n := testutil.ToFloat64(m.Rejections.WithLabelValues("no-space")); (n == 1) != tt.wantFull {
				t.Errorf("after dbReply(%v): %v no-space rejections counted", tt.err, n)
			}
		})
	}
}

func TestFullMark(t *testing.T) {
	now := time.Unix(1000, 0)
	f := fullMark{hold: 5 * time.Second}
	if f.full(now) {
		t.Fatal("full before any no-space")
	}
	f.seen(now)
	if !f.full(now) || !f.full(now.Add(5*time.Second-1)) {
		t.Error("not full within the hold")
	}
	if f.full(now.Add(5 * time.Second)) {
		t.Error("still full after the hold")
	}
	f.clear()
	if f.full(now) {
		t.Error("full after a successful write cleared it")
	}
	off := fullMark{hold: -1}
	off.seen(now)
	if off.full(now) {
		t.Error("full with a negative hold")
	}
}

// fakeDB is a dbd whose mailboxes all exist and whose batches fail with
// batchErr (nil: the batch succeeds).
type fakeDB struct {
	mu       sync.Mutex
	batchErr error
	batches  int
}

func (f *fakeDB) fail(err error) {
	f.mu.Lock()
	f.batchErr = err
	f.mu.Unlock()
}

func (f *fakeDB) batchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

func (f *fakeDB) Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	if f.batchErr != nil {
		return nil, fmt.Errorf("batch: %w", f.batchErr)
	}
	return make([]wire.Result, len(reqs)), nil
}

func (f *fakeDB) Find(ctx context.Context, t model.Table, content []byte) (*wire.Row, error) {
	return &wire.Row{}, nil
}

func (f *fakeDB) Set(ctx context.Context, t model.Table, ref wire.Ref, col string, v uint64) (uint64, error) {
	return 1, nil
}

func (f *fakeDB) FindOrInsert(ctx context.Context, t model.Table, content []byte) (uint64, bool, error) {
	return 1, true, nil
}

func (f *fakeDB) WatchWhereFunc(ctx context.Context, t model.Table, cond wire.WatchCond, _ func(*wire.Row)) (*client.Stream, error) {
	return nil, errors.New("fake: no watch")
}

func (f *fakeDB) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	return nil, client.ErrNotFound
}

// TestNoSpaceReplies (TEST-CATALOG 38, smtpd side): when dbd answers
// no-space for the mail's batch, DATA gets 452 4.3.1; the next MAIL gets
// 452 4.3.1 at once, until the hold passes; another dbd failure is still
// 451 4.3.0.
func TestNoSpaceReplies(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	db := &fakeDB{}
	c := dialFake(t, db, metrics.New(prometheus.NewRegistry()), clock)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	mail := func() error {
		if err := c.Mail("a@sender.test", nil); err != nil {
			return err
		}
		if err := c.Rcpt("jo@example.org", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, "From: a@sender.test\r\nSubject: full\r\n\r\nbody\r\n"); err != nil {
			return err
		}
		return w.Close()
	}
	want := func(what string, err error, code int, enh smtp.EnhancedCode) {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enh {
			t.Fatalf("%s: %v, want %d %v", what, err, code, enh)
		}
		c.Reset()
	}

	db.fail(&wire.Error{Code: wire.CodeNoSpace, Msg: "dbd's disk is full"})
	want("mail meeting the full disk", mail(), 452, smtp.EnhancedCode{4, 3, 1})
	batches := db.batchCount()
	want("MAIL while dbd is full", c.Mail("a@sender.test", nil), 452, smtp.EnhancedCode{4, 3, 1})
	if db.batchCount() != batches {
		t.Errorf("a MAIL refused for the full disk reached dbd")
	}

	mu.Lock()
	now = now.Add(DefaultNoSpaceHold)
	mu.Unlock()
	db.fail(&wire.Error{Code: wire.CodeUnavailable, Msg: "dbd cannot serve now"})
	want("mail after the hold, dbd failing otherwise", mail(), 451, smtp.EnhancedCode{4, 3, 0})
	if err := c.Mail("a@sender.test", nil); err != nil {
		t.Errorf("MAIL after another failure: %v, want 250", err)
	}
}

// dialFake serves sessions on db over loopback until the test ends and
// returns a client connected to them.
func dialFake(t *testing.T, db interface {
	DB
	deliver.WatchDB
}, m *metrics.Metrics, now func() time.Time) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(serveFake(t, db, m, now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveFake serves sessions on db over loopback until the test ends and
// returns the address.
func serveFake(t *testing.T, db interface {
	DB
	deliver.WatchDB
}, m *metrics.Metrics, now func() time.Time) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	be := NewBackend(ctx, Config{Hostname: "mx.test", IDPrefix: "t", Watcher: deliver.NewWatcher(db, log),
		Decision: deliver.Policy{Window: time.Second}, Logger: log, Metrics: m, Now: now}, db)
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// armingDB is fakeDB with armed acknowledgements that fire at once (the
// mail's rows accepted by an earlier attempt) or never.
type armingDB struct {
	*fakeDB
	fire bool
}

func (a *armingDB) Arm(ctx context.Context, conds []wire.ArmCond, reqs []wire.Request, wait time.Duration) (bool, []wire.Result, error) {
	if !a.fire {
		<-ctx.Done()
		return false, nil, ctx.Err()
	}
	return true, make([]wire.Result, len(reqs)), nil
}

// TestStoreFailedArmed: the acknowledgement is armed alongside the store.
// If the store fails, the arm is withdrawn: 451 4.3.0, unless it fired,
// which means the same mail is accepted and now in its mailbox: then 250.
func TestStoreFailedArmed(t *testing.T) {
	for _, fire := range []bool{false, true} {
		t.Run(fmt.Sprintf("fired=%v", fire), func(t *testing.T) {
			db := &armingDB{fakeDB: &fakeDB{}, fire: fire}
			db.fail(&wire.Error{Code: wire.CodeUnavailable, Msg: "dbd cannot serve now"})
			m := metrics.New(prometheus.NewRegistry())
			c := dialFake(t, db, m, time.Now)
			err := c.SendMail("a@sender.test", []string{"jo@example.org"}, strings.NewReader("From: a@sender.test\r\nSubject: s\r\n\r\nbody\r\n"))
			var se *smtp.SMTPError
			switch {
			case fire && err != nil:
				t.Fatalf("store failed, arm fired: %v, want 250", err)
			case !fire && (!errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != smtp.EnhancedCode{4, 3, 0}):
				t.Fatalf("store failed, arm not fired: %v, want 451 4.3.0", err)
			}
			if n := testutil.ToFloat64(m.Acks.WithLabelValues("armed")); n != map[bool]float64{false: 0, true: 1}[fire] {
				t.Errorf("armed acknowledgements counted: %v", n)
			}
		})
	}
}

// slowStoreDB is fakeDB whose store takes its time on the session's
// clock.
type slowStoreDB struct {
	*fakeDB
	advance func()
}

func (f *slowStoreDB) Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error) {
	f.advance()
	return f.fakeDB.Batch(ctx, reqs)
}

// TestDecisionWindowIncludesStore: the decision window counts from the
// end of DATA, so a store that took most of it leaves only the rest to
// wait (before, the whole window started after the store, and a slow dbd
// made senders wait store time + window).
func TestDecisionWindowIncludesStore(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	db := &slowStoreDB{fakeDB: &fakeDB{}, advance: func() {
		mu.Lock()
		now = now.Add(950 * time.Millisecond) // of dialFake's 1 s window
		mu.Unlock()
	}}
	c := dialFake(t, db, metrics.New(prometheus.NewRegistry()), clock)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("jo@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "From: a@sender.test\r\nSubject: slow\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = w.Close()
	waited := time.Since(began)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("undecided mail: %v, want 451 4.7.1", err)
	}
	// 100 ms left of the window (lastLook); the old code waited 1 s.
	if waited >= 700*time.Millisecond {
		t.Errorf("reply after %v: the store's 950 ms were not counted in the 1 s window", waited)
	}
}
