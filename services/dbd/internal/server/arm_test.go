package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// smtpd arms its acknowledgement over the wire; spamd's verdict fires it,
// and when spamd's set is answered the acknowledgement is durable too.
func TestArmOverTheWire(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	smtpd, spamd := e.Client(auth.SMTPD), e.Client(auth.SpamD)
	content := model.ReceiveContent(model.KeyOf(model.Mail, []byte("m")), model.KeyOf(model.Mailbox, []byte("bob@example.org")))
	if _, _, err := smtpd.FindOrInsert(ctx, model.Receive, content); err != nil {
		t.Fatal(err)
	}
	key := model.KeyOf(model.Receive, content)
	ref := wire.Ref{ByKey: true, Key: key}
	conds := []wire.ArmCond{{Table: model.Receive, Key: key, Name: model.ColVerdict, Mask: 0xff, Want: uint64(model.Accept)}}
	ack := []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet}}

	type answer struct {
		fired bool
		res   []wire.Result
		err   error
	}
	got := make(chan answer, 1)
	go func() {
		fired, res, err := smtpd.Arm(ctx, conds, ack, 10*time.Second)
		got <- answer{fired, res, err}
	}()
	// Whether the arm is parked before the verdict comes or finds it set
	// already, it fires; that a parked one shares the verdict's commit is
	// store's TestArmFiresInTheVerdictsCommit.
	if _, err := spamd.Set(ctx, model.Receive, ref, model.ColVerdict, model.EncodeVerdict(model.SourceFilter, 1, model.Accept)); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || !a.fired || len(a.res) != 1 || a.res[0].NotFound {
		t.Fatalf("Arm = %v, %+v, %v", a.fired, a.res, a.err)
	}
	row, err := spamd.FindKey(ctx, model.Receive, key)
	if err != nil {
		t.Fatal(err)
	}
	if row.State.Cols[model.ColAcknowledged] != model.FlagSet {
		t.Fatalf("fired, but the row is not acknowledged: %v", row.State.Cols)
	}

	// Not fired within its wait: nothing applied.
	other := model.KeyOf(model.Receive, []byte("no such row"))
	fired, _, err := smtpd.Arm(ctx, []wire.ArmCond{{Table: model.Receive, Key: other, Name: model.ColVerdict, Mask: 0xff, Want: 1}},
		[]wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: other}, Name: model.ColAcknowledged, Value: 1}}, 50*time.Millisecond)
	if err != nil || fired {
		t.Fatalf("Arm on a missing row = %v, %v; want not fired", fired, err)
	}

	// Roles: conditions need the read right, sub-requests a batch's.
	var we *wire.Error
	mbox := e.Client(auth.Mailbox)
	_, _, err = mbox.Arm(ctx, conds, []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColVerdict, Value: 1}}, time.Second)
	if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Fatalf("mailbox role arms a verdict: %v, want forbidden", err)
	}
	_, _, err = smtpd.Arm(ctx, []wire.ArmCond{{Table: model.Body, Key: key, Name: "x", Mask: 1, Want: 1}}, ack, time.Second)
	if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Fatalf("smtpd arms on the body table: %v, want forbidden", err)
	}
}
