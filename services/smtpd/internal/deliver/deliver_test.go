package deliver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
)

func verdict(v model.Verdict) uint64 { return model.EncodeVerdict(model.SourceOperator, 1000, v) }

func TestDecideRules(t *testing.T) {
	a, b := model.KeyOf(model.Receive, []byte("a")), model.KeyOf(model.Receive, []byte("b"))
	st := func(cols map[string]uint64) model.State { return model.State{Cols: cols} }
	acc := func(backed bool) model.State {
		c := map[string]uint64{model.ColVerdict: verdict(model.Accept)}
		if backed {
			c[model.ColBackedUp] = model.FlagSet
		}
		return st(c)
	}
	rej := st(map[string]uint64{model.ColVerdict: verdict(model.Reject)})
	retry := st(map[string]uint64{model.ColVerdict: verdict(model.Retry)})
	oldRetry := st(map[string]uint64{model.ColVerdict: model.EncodeVerdict(model.SourceFilter, 99, model.Retry)})
	cases := []struct {
		name      string
		states    map[model.Key]model.State
		minCopies int
		done      bool
		kind      Kind
		accepted  int
	}{
		{"nothing seen", map[model.Key]model.State{}, 2, false, 0, 0},
		{"one undecided", map[model.Key]model.State{a: acc(true), b: st(nil)}, 2, false, 0, 0},
		{"accepted, not backed up, strict", map[model.Key]model.State{a: acc(false), b: acc(true)}, 2, false, 0, 0},
		{"accepted, not backed up, one copy", map[model.Key]model.State{a: acc(false), b: acc(false)}, 1, true, Accepted, 2},
		{"all accepted and backed up", map[model.Key]model.State{a: acc(true), b: acc(true)}, 2, true, Accepted, 2},
		{"all rejected (no backup needed)", map[model.Key]model.State{a: rej, b: rej}, 2, true, Rejected, 0},
		{"mixed", map[model.Key]model.State{a: acc(true), b: rej}, 2, true, Accepted, 1},
		{"retry wins", map[model.Key]model.State{a: acc(true), b: retry}, 2, true, Retry, 0},
		{"retry waits for the undecided", map[model.Key]model.State{a: st(nil), b: retry}, 2, false, 0, 0},
		{"a retry of an earlier attempt waits", map[model.Key]model.State{a: acc(true), b: oldRetry}, 2, false, 0, 0},
		// The retry is this attempt's answer and nothing will be
		// acknowledged, so the backed-up mark of the accepted recipient
		// is not waited for: strict mode with a lagging or unreachable
		// peer held the sender for the whole window, then said
		// "undecided" instead of "greylisted" (both orders).
		{"retry wins over an accept not backed up", map[model.Key]model.State{a: acc(false), b: retry}, 2, true, Retry, 0},
		{"retry wins over a later accept not backed up", map[model.Key]model.State{a: retry, b: acc(false)}, 2, true, Retry, 0},
		{"mixed waits for the accepted one's backup", map[model.Key]model.State{a: acc(false), b: rej}, 2, false, 0, 0},
	}
	for _, c := range cases {
		o, done := Decide([]model.Key{a, b}, c.states, c.minCopies, 100)
		if done != c.done || (done && (o.Kind != c.kind || len(o.Accepted) != c.accepted)) {
			t.Errorf("%s: got %v %+v, want done=%v kind=%v accepted=%d", c.name, done, o, c.done, c.kind, c.accepted)
		}
	}
}

// TestStoreWaitAcknowledge runs the whole path against a real in-process
// dbd: store, wait while an operator decides and backupd marks the copy,
// acknowledge, and a retry of the same mail decided at once.
func TestStoreWaitAcknowledge(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	smtpd, admin := e.Client("smtpd"), e.Client("admin")
	ctx := context.Background()

	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	raw := []byte("Received: from x by y\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n")
	rows := model.NewMailRows(raw)
	p, err := rows.Parts.WithTrace([]byte("Received: from client by mx; now\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	rows.Parts = p
	m := Mail{Rows: rows, Mailboxes: []model.Key{mb}, ThrowIn: []byte("attempt 1"), ReceivedAt: time.Now()}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := NewWatcher(smtpd, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(wctx)
	st, err := Store(ctx, smtpd, m)
	if err != nil {
		t.Fatal(err)
	}

	// Undecided: the window passes.
	o, err := w.Wait(ctx, st.Receives, Policy{Window: 50 * time.Millisecond, MinCopies: 2})
	if err != nil || o.Kind != Undecided {
		t.Fatalf("undecided: %+v %v", o, err)
	}

	// Decided while waiting: the watch wakes Wait, no polling.
	type res struct {
		o   Outcome
		err error
	}
	done := make(chan res, 1)
	go func() {
		o, err := w.Wait(ctx, st.Receives, Policy{Window: 10 * time.Second, MinCopies: 2})
		done <- res{o, err}
	}()
	ref := wire.Ref{ByKey: true, Key: st.Receives[0]}
	if _, err := admin.Set(ctx, model.Receive, ref, model.ColVerdict, verdict(model.Accept)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Set(ctx, model.Receive, ref, model.ColBackedUp, model.FlagSet); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.o.Kind != Accepted || len(r.o.Accepted) != 1 || r.o.Acked {
		t.Fatalf("decided: %+v %v", r.o, r.err)
	}
	if err := Acknowledge(ctx, smtpd, r.o.Accepted, st.ReceivedKey, time.Now()); err != nil {
		t.Fatal(err)
	}
	row, err := admin.FindKey(ctx, model.Receive, st.Receives[0])
	if err != nil {
		t.Fatal(err)
	}
	if row.State.Cols[model.ColAcknowledged] != model.FlagSet {
		t.Fatalf("not acknowledged: %v", row.State.Cols)
	}
	if k, ok := model.AcknowledgedReceived(row.State); !ok || k != st.ReceivedKey {
		t.Fatalf("received link %v %v, want %v", k, ok, st.ReceivedKey)
	}

	// A retry with other Received lines maps to the same rows and is
	// decided at once.
	rows2 := model.NewMailRows([]byte("Received: from elsewhere\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"))
	st2, err := Store(ctx, smtpd, Mail{Rows: rows2, Mailboxes: []model.Key{mb}, ThrowIn: []byte("attempt 2")})
	if err != nil {
		t.Fatal(err)
	}
	if st2.Receives[0] != st.Receives[0] {
		t.Fatal("retry got another receive row")
	}
	o, err = w.Wait(ctx, st2.Receives, Policy{Window: 10 * time.Second, MinCopies: 2})
	if err != nil || o.Kind != Accepted || !o.Acked {
		t.Fatalf("retry: %+v %v", o, err)
	}
}

func TestStoreFailsWhenDBDown(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	smtpd := e.Client("smtpd")
	e.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows := model.NewMailRows([]byte("Subject: x\r\n\r\nb\r\n"))
	if _, err := Store(ctx, smtpd, Mail{Rows: rows, Mailboxes: []model.Key{model.KeyOf(model.Mailbox, []byte("a@b"))}}); err == nil {
		t.Fatal("store succeeded with dbd down")
	}
}

// TestManyWaitersOneStream: more transactions wait at once than dbd allows
// streams on one connection (64); they share the Watcher's one stream.
func TestManyWaitersOneStream(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	smtpd, admin := e.Client("smtpd"), e.Client("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := NewWatcher(smtpd, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(ctx)
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	const n = 150
	keys := make(chan model.Key, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			rows := model.NewMailRows([]byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)))
			st, err := Store(ctx, smtpd, Mail{Rows: rows, Mailboxes: []model.Key{mb}})
			if err != nil {
				keys <- model.Key{}
				errs <- err
				return
			}
			keys <- st.Receives[0]
			o, err := w.Wait(ctx, st.Receives, Policy{Window: 20 * time.Second, MinCopies: 1})
			if err == nil && o.Kind != Accepted {
				err = fmt.Errorf("outcome %v", o.Kind)
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		k := <-keys
		if k == (model.Key{}) {
			continue // its store failed; reported below
		}
		if _, err := admin.Set(ctx, model.Receive, wire.Ref{ByKey: true, Key: k}, model.ColVerdict, verdict(model.Accept)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowBeforeStore: interest registered before the store catches a
// verdict that lands before Wait is even called, without reading the row.
func TestFollowBeforeStore(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	smtpd, admin := e.Client("smtpd"), e.Client("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := NewWatcher(smtpd, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(ctx)
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	rows := model.NewMailRows([]byte("Subject: follow\r\n\r\nbody\r\n"))
	// Wait until the watcher is subscribed, as smtpd is long before mail.
	if o, err := w.Wait(ctx, []model.Key{model.KeyOf(model.Receive, []byte("none"))}, Policy{Window: 50 * time.Millisecond}); err != nil || o.Kind != Undecided {
		t.Fatalf("warm-up: %+v %v", o, err)
	}
	f := w.Follow(ReceiveKeys(rows.MailKey, []model.Key{mb}))
	defer f.Close()
	st, err := Store(ctx, smtpd, Mail{Rows: rows, Mailboxes: []model.Key{mb}})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Fresh[0] {
		t.Fatal("a new receive row not reported fresh")
	}
	if _, err := admin.Set(ctx, model.Receive, wire.Ref{ByKey: true, Key: st.Receives[0]}, model.ColVerdict, verdict(model.Accept)); err != nil {
		t.Fatal(err)
	}
	o, err := f.Wait(ctx, st.Fresh, Policy{Window: 10 * time.Second, MinCopies: 1})
	if err != nil || o.Kind != Accepted {
		t.Fatalf("%+v %v", o, err)
	}
	// The same mail again: not fresh, read back, decided at once.
	st2, err := Store(ctx, smtpd, Mail{Rows: rows, Mailboxes: []model.Key{mb}})
	if err != nil || st2.Fresh[0] {
		t.Fatalf("second store: %+v %v", st2, err)
	}
}

// TestArmWaitsForItsStore: smtpd arms a retry's acknowledgement alongside
// its store. The mail was accepted on an earlier attempt but never
// acknowledged (that sender got 451), so the verdict condition holds
// before the retry's rows are there: the arm must still wait for the
// retry's own store, or the mail would be linked to a Received row that
// is not (and, had the store failed, would never be) on disk.
func TestArmWaitsForItsStore(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	smtpd, admin := e.Client("smtpd"), e.Client("admin")
	ctx := context.Background()
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	attempt := func(n int) Mail {
		rows := model.NewMailRows([]byte("Subject: hi\r\nMessage-ID: <2@x>\r\n\r\nbody\r\n"))
		p, err := rows.Parts.WithTrace([]byte(fmt.Sprintf("Received: from client by mx; attempt %d\r\n", n)))
		if err != nil {
			t.Fatal(err)
		}
		rows.Parts, rows.Received = p, p.Received
		rows.ReceivedKey = model.KeyOf(model.Received, p.Received)
		return Mail{Rows: rows, Mailboxes: []model.Key{mb}, ThrowIn: []byte(fmt.Sprintf("attempt %d", n)), ReceivedAt: time.Now()}
	}
	first, err := Store(ctx, smtpd, attempt(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Set(ctx, model.Receive, wire.Ref{ByKey: true, Key: first.Receives[0]}, model.ColVerdict, verdict(model.Accept)); err != nil {
		t.Fatal(err)
	}

	plan := PlanStore(attempt(2))
	a := Arm(ctx, smtpd, plan.Keys.Receives, plan.Keys.ReceivedKey, plan.Keys.ThrowInKey, time.Now(), 1, 10*time.Second)
	if fired, err := a.Fired(200 * time.Millisecond); fired || err != nil {
		t.Fatalf("armed before its store: Fired = %v, %v; want it waiting", fired, err)
	}
	if _, err := plan.Send(ctx, smtpd); err != nil {
		t.Fatal(err)
	}
	if fired, err := a.Fired(10 * time.Second); !fired || err != nil {
		t.Fatalf("after its store: Fired = %v, %v", fired, err)
	}
	row, err := admin.FindKey(ctx, model.Receive, plan.Keys.Receives[0])
	if err != nil {
		t.Fatal(err)
	}
	k, ok := model.AcknowledgedReceived(row.State)
	if !ok || k != plan.Keys.ReceivedKey {
		t.Fatalf("received link %v %v, want the retry's %v", k, ok, plan.Keys.ReceivedKey)
	}
	if _, err := admin.FindKey(ctx, model.Received, k); err != nil {
		t.Fatalf("the linked Received row: %v", err)
	}
}
