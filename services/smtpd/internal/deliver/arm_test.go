package deliver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// fakeArmer answers an arm request when told to, or when its ctx ends.
type fakeArmer struct {
	conds  chan []wire.ArmCond
	reqs   []wire.Request
	answer chan armAnswer
}

type armAnswer struct {
	fired bool
	res   []wire.Result
	err   error
}

func newFakeArmer() *fakeArmer {
	return &fakeArmer{conds: make(chan []wire.ArmCond, 1), answer: make(chan armAnswer, 1)}
}

func (f *fakeArmer) Arm(ctx context.Context, conds []wire.ArmCond, reqs []wire.Request, wait time.Duration) (bool, []wire.Result, error) {
	f.reqs = reqs
	f.conds <- conds
	select {
	case a := <-f.answer:
		return a.fired, a.res, a.err
	case <-ctx.Done():
		return false, nil, ctx.Err()
	}
}

func results(n int) []wire.Result { return make([]wire.Result, n) }

func TestArmConditions(t *testing.T) {
	rows := []model.Key{model.KeyOf(model.Receive, []byte("a")), model.KeyOf(model.Receive, []byte("b"))}
	for _, minCopies := range []int{1, 2} {
		f := newFakeArmer()
		throwIn := model.KeyOf(model.ThrowIn, []byte("attempt"))
		a := Arm(context.Background(), f, rows, model.KeyOf(model.Received, []byte("r")), throwIn, time.Now(), minCopies, time.Second,
			wire.Request{Op: wire.OpSet, Table: model.ThrowIn, Name: "reply", Value: 250})
		conds := <-f.conds
		want := len(rows)*minCopies + 1
		if len(conds) != want {
			t.Fatalf("minCopies %d: %d conditions, want %d", minCopies, len(conds), want)
		}
		for _, c := range conds {
			switch c.Name {
			case ColStored:
				if c.Table != model.ThrowIn || c.Key != throwIn || c.Want != model.FlagSet {
					t.Fatalf("stored condition %+v", c)
				}
			case model.ColVerdict:
				if c.Mask != 0xff || c.Want != uint64(model.Accept) {
					t.Fatalf("verdict condition %+v", c)
				}
			case model.ColBackedUp:
				if minCopies == 1 || c.Want != model.FlagSet {
					t.Fatalf("backed-up condition %+v with minCopies %d", c, minCopies)
				}
			default:
				t.Fatalf("condition on %s", c.Name)
			}
		}
		// Acknowledge's batch, then the caller's requests.
		if len(f.reqs) != 2*len(rows)+1 || f.reqs[0].Name != model.ColAcknowledged || f.reqs[len(f.reqs)-1].Name != "reply" {
			t.Fatalf("armed batch %+v", f.reqs)
		}
		f.answer <- armAnswer{fired: true, res: results(len(f.reqs))}
		if fired, err := a.Fired(time.Second); !fired || err != nil {
			t.Fatalf("Fired = %v, %v", fired, err)
		}
		if fired, _ := a.Withdraw(0); !fired {
			t.Fatal("Withdraw after firing says not fired")
		}
	}
}

func TestArmWithdraw(t *testing.T) {
	rows := []model.Key{model.KeyOf(model.Receive, []byte("a"))}
	recv := model.KeyOf(model.Received, []byte("r"))

	// Not answered: Fired gives up without error, Withdraw cancels.
	f := newFakeArmer()
	a := Arm(context.Background(), f, rows, recv, model.Key{}, time.Now(), 1, time.Second)
	<-f.conds
	if fired, err := a.Fired(10 * time.Millisecond); fired || err != nil {
		t.Fatalf("unanswered Fired = %v, %v", fired, err)
	}
	if fired, _ := a.Withdraw(10 * time.Millisecond); fired {
		t.Fatal("withdrawn unanswered arm says fired")
	}

	// dbd's answer comes within Withdraw's wait: it counts.
	f = newFakeArmer()
	a = Arm(context.Background(), f, rows, recv, model.Key{}, time.Now(), 1, time.Second)
	<-f.conds
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.answer <- armAnswer{fired: true, res: results(2)}
	}()
	if fired, _ := a.Withdraw(5 * time.Second); !fired {
		t.Fatal("an arm that fired within the wait is reported not fired")
	}

	// A row that vanished is not an acknowledgement.
	f = newFakeArmer()
	a = Arm(context.Background(), f, rows, recv, model.Key{}, time.Now(), 1, time.Second)
	<-f.conds
	f.answer <- armAnswer{fired: true, res: []wire.Result{{NotFound: true}, {}}}
	if fired, err := a.Fired(time.Second); fired || err == nil {
		t.Fatalf("vanished row: Fired = %v, %v", fired, err)
	}

	// An error answer (a dbd without arm) is returned.
	f = newFakeArmer()
	a = Arm(context.Background(), f, rows, recv, model.Key{}, time.Now(), 1, time.Second)
	<-f.conds
	f.answer <- armAnswer{err: &wire.Error{Code: wire.CodeBadRequest, Msg: "unknown op"}}
	var we *wire.Error
	if _, err := a.Fired(time.Second); !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
		t.Fatalf("error answer: %v", err)
	}
}
