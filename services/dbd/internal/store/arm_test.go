package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twinmx/twinmx/pkg/model"
)

// acceptCond is smtpd's condition: the row's verdict says accept.
func acceptCond(k model.Key) Cond {
	return Cond{Table: model.Receive, Key: k, Name: model.ColVerdict, Mask: 0xff, Want: uint64(model.Accept)}
}

func setCol(k model.Key, name string, v uint64) Mutation {
	return Mutation{Kind: Set, Table: model.Receive, Key: k, Name: name, Value: v}
}

func colOf(t *testing.T, s *Store, k model.Key, name string) uint64 {
	t.Helper()
	v := mustView(t, s)
	defer v.Close()
	row, ok, err := v.Find(model.Receive, k)
	if err != nil || !ok {
		t.Fatalf("Find(%s) = %v, %v", k, ok, err)
	}
	return row.State.Cols[name]
}

// receiveRow is receiveIns with its key filled in.
func receiveRow(mail string, mailbox model.Key) Mutation {
	m := receiveIns(mail, mailbox)
	m.Key = model.KeyOf(model.Receive, m.Content)
	return m
}

func verdict(v model.Verdict) uint64 { return model.EncodeVerdict(model.SourceFilter, 7, v) }

// armNow hands an armed request to the writer and returns it unanswered.
// Requests are staged in the order they reach the writer's queue, so any
// request submitted after armNow returns is staged after this one.
func armNow(t *testing.T, s *Store, conds []Cond, muts []Mutation) *writeReq {
	t.Helper()
	for i := range muts {
		if err := checkMutation(&muts[i]); err != nil {
			t.Fatal(err)
		}
	}
	r := &writeReq{muts: muts, conds: conds, done: make(chan struct{})}
	if err := s.enqueue(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantArmStats fails unless the store counts exactly these ends.
func wantArmStats(t *testing.T, s *Store, atOnce, fired, withdrawn uint64) {
	t.Helper()
	if a, f, w := s.ArmStats(); a != atOnce || f != fired || w != withdrawn {
		t.Fatalf("ArmStats = at once %d, fired %d, withdrawn %d; want %d, %d, %d", a, f, w, atOnce, fired, withdrawn)
	}
}

func answered(t *testing.T, r *writeReq) ([]Result, error) {
	t.Helper()
	select {
	case <-r.done:
		return r.res, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("armed request not answered")
		return nil, nil
	}
}

// The armed acknowledgement is durable in the same commit as the verdict
// that makes it true: when the verdict's Apply returns, a reader already
// sees the acknowledgement.
func TestArmFiresInTheVerdictsCommit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	mb := model.KeyOf(model.Mailbox, []byte("bob@example.org"))
	a, b := receiveRow("mail a", mb), receiveRow("mail b", mb)
	if _, err := s.Apply(ctx, []Mutation{a, b}); err != nil {
		t.Fatal(err)
	}
	r := armNow(t, s, []Cond{acceptCond(a.Key), acceptCond(b.Key)},
		[]Mutation{setCol(a.Key, model.ColAcknowledged, model.FlagSet), setCol(b.Key, model.ColAcknowledged, model.FlagSet)})

	// One condition met, the other not: nothing happens.
	if _, err := s.Apply(ctx, []Mutation{setCol(a.Key, model.ColVerdict, verdict(model.Accept))}); err != nil {
		t.Fatal(err)
	}
	if got := colOf(t, s, a.Key, model.ColAcknowledged); got != 0 {
		t.Fatalf("acknowledged after one of two verdicts: %d", got)
	}
	// A verdict that is not accept does not fire it either.
	if _, err := s.Apply(ctx, []Mutation{setCol(b.Key, model.ColVerdict, verdict(model.Retry))}); err != nil {
		t.Fatal(err)
	}
	if got := colOf(t, s, b.Key, model.ColAcknowledged); got != 0 {
		t.Fatalf("acknowledged after a retry verdict: %d", got)
	}
	// A later accept (higher epoch) does, in the same commit.
	if _, err := s.Apply(ctx, []Mutation{setCol(b.Key, model.ColVerdict, model.EncodeVerdict(model.SourceFilter, 8, model.Accept))}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []model.Key{a.Key, b.Key} {
		if got := colOf(t, s, k, model.ColAcknowledged); got != model.FlagSet {
			t.Fatalf("row %s acknowledged = %d right after the verdict's commit, want it in the same commit", k, got)
		}
	}
	res, err := answered(t, r)
	if err != nil || len(res) != 2 || res[0].NotFound || res[1].NotFound {
		t.Fatalf("armed request answered %+v, %v", res, err)
	}
	wantArmStats(t, s, 0, 1, 0)
}

// smtpd arms the acknowledgement before its store is answered, so the arm
// may reach the writer before the rows exist: it stays parked through the
// insert (no verdict yet) and fires in the verdict's commit.
func TestArmBeforeItsRows(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	a := receiveRow("mail a", model.KeyOf(model.Mailbox, []byte("bob@example.org")))
	r := armNow(t, s, []Cond{acceptCond(a.Key)}, []Mutation{setCol(a.Key, model.ColAcknowledged, model.FlagSet)})
	if _, err := s.Apply(ctx, []Mutation{a}); err != nil {
		t.Fatal(err)
	}
	if got := colOf(t, s, a.Key, model.ColAcknowledged); got != 0 {
		t.Fatalf("acknowledged by the insert alone: %d", got)
	}
	select {
	case <-r.done:
		t.Fatalf("armed request answered before the verdict: %v", r.err)
	default:
	}
	if _, err := s.Apply(ctx, []Mutation{setCol(a.Key, model.ColVerdict, verdict(model.Accept))}); err != nil {
		t.Fatal(err)
	}
	if got := colOf(t, s, a.Key, model.ColAcknowledged); got != model.FlagSet {
		t.Fatalf("acknowledged = %d right after the verdict's commit, want it in the same commit", got)
	}
	if res, err := answered(t, r); err != nil || len(res) != 1 || res[0].NotFound {
		t.Fatalf("armed request answered %+v, %v", res, err)
	}
	wantArmStats(t, s, 0, 1, 0)
}

// Conditions met already: applied in the next commit, like a plain batch.
func TestArmMetAlready(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	a := receiveRow("mail a", model.KeyOf(model.Mailbox, []byte("bob@example.org")))
	if _, err := s.Apply(ctx, []Mutation{a, setCol(a.Key, model.ColVerdict, verdict(model.Accept))}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Arm(ctx, []Cond{acceptCond(a.Key)}, []Mutation{setCol(a.Key, model.ColAcknowledged, model.FlagSet)}, time.Now().Add(time.Minute))
	if err != nil || len(res) != 1 {
		t.Fatalf("Arm = %+v, %v", res, err)
	}
	if got := colOf(t, s, a.Key, model.ColAcknowledged); got != model.FlagSet {
		t.Fatalf("acknowledged = %d", got)
	}
	wantArmStats(t, s, 1, 0, 0)
}

// Past its deadline an armed request is withdrawn for good: a verdict that
// comes later applies nothing of it.
func TestArmExpires(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	a := receiveRow("mail a", model.KeyOf(model.Mailbox, []byte("bob@example.org")))
	missing := model.KeyOf(model.Receive, []byte("no such row"))
	if _, err := s.Apply(ctx, []Mutation{a}); err != nil {
		t.Fatal(err)
	}
	ack := []Mutation{setCol(a.Key, model.ColAcknowledged, model.FlagSet)}
	if _, err := s.Arm(ctx, []Cond{acceptCond(a.Key)}, ack, time.Now().Add(30*time.Millisecond)); !errors.Is(err, ErrNotFired) {
		t.Fatalf("Arm past its deadline = %v, want ErrNotFired", err)
	}
	// A condition on a row that does not exist is never met.
	if _, err := s.Arm(ctx, []Cond{acceptCond(a.Key), acceptCond(missing)}, ack, time.Now().Add(30*time.Millisecond)); !errors.Is(err, ErrNotFired) {
		t.Fatalf("Arm on a missing row = %v, want ErrNotFired", err)
	}
	// A caller that goes away withdraws it too.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := s.Arm(cctx, []Cond{acceptCond(a.Key)}, ack, time.Now().Add(time.Minute)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Arm with its context ended = %v, want the context's error", err)
	}
	if _, err := s.Apply(ctx, []Mutation{setCol(a.Key, model.ColVerdict, verdict(model.Accept))}); err != nil {
		t.Fatal(err)
	}
	if got := colOf(t, s, a.Key, model.ColAcknowledged); got != 0 {
		t.Fatalf("a withdrawn armed request was applied: acknowledged = %d", got)
	}
	wantArmStats(t, s, 0, 0, 3)
	if n := len(s.armed); n != 0 {
		t.Fatalf("%d rows still have parked requests", n)
	}
}

// Closing the store answers a parked request.
func TestArmClosed(t *testing.T) {
	s := openTest(t, vfs.NewMem())
	a := receiveRow("mail a", model.KeyOf(model.Mailbox, []byte("bob@example.org")))
	if _, err := s.Apply(context.Background(), []Mutation{a}); err != nil {
		t.Fatal(err)
	}
	r := armNow(t, s, []Cond{acceptCond(a.Key)}, []Mutation{setCol(a.Key, model.ColAcknowledged, model.FlagSet)})
	s.Close()
	if _, err := answered(t, r); !errors.Is(err, ErrClosed) {
		t.Fatalf("parked request after Close: %v, want ErrClosed", err)
	}
}

func TestArmInvalid(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, vfs.NewMem())
	defer s.Close()
	k := model.KeyOf(model.Receive, []byte("x"))
	ack := []Mutation{setCol(k, model.ColAcknowledged, model.FlagSet)}
	for name, conds := range map[string][]Cond{
		"none":      nil,
		"bad table": {{Table: 200, Key: k, Name: "verdict"}},
		"bad name":  {{Table: model.Receive, Key: k, Name: ""}},
	} {
		if _, err := s.Arm(ctx, conds, ack, time.Now().Add(time.Second)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Arm = %v, want ErrInvalid", name, err)
		}
	}
}
