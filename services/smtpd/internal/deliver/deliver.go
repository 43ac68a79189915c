// Package deliver is a received mail's path through dbd: it stores the mail
// as one atomic batch, waits on dbd's watch stream for every recipient's
// verdict and the backed-up mark, and marks the accepted receive rows
// acknowledged before smtpd may answer 250 (SPEC §1, §5).
//
// It knows nothing about SMTP sessions; package session turns its Outcome
// into a reply.
package deliver

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// DB is what Store and Acknowledge need of a dbd client (*client.Client
// implements it).
type DB interface {
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

// Mail is one received transaction, ready to store.
type Mail struct {
	Rows       model.MailRows // the split mail with smtpd's trace field added
	Mailboxes  []model.Key    // one receive row per recipient mailbox
	ThrowIn    []byte         // content of the throw-in row of this attempt
	ReceivedAt time.Time
	// Receives, if not nil, is ReceiveKeys(Rows.MailKey, Mailboxes),
	// which the caller already has (see Follow): not hashed again.
	Receives []model.Key
}

// ReceiveKeys returns the keys of the receive rows of mail in mailboxes,
// in order: what Store will write, known before it does (see Follow).
func ReceiveKeys(mail model.Key, mailboxes []model.Key) []model.Key {
	keys := make([]model.Key, len(mailboxes))
	for i, mb := range mailboxes {
		keys[i] = model.KeyOf(model.Receive, model.ReceiveContent(mail, mb))
	}
	return keys
}

// Stored is the result of Store: the keys smtpd waits on and links.
type Stored struct {
	Receives    []model.Key // same order as Mail.Mailboxes
	Fresh       []bool      // Fresh[i]: this store created Receives[i]
	ReceivedKey model.Key
	ThrowInKey  model.Key
}

// Plan is a mail's store batch, built but not yet sent. Its keys (the
// receive rows, the Received row, the throw-in) follow from the content,
// so they are known before dbd has anything: smtpd arms the
// acknowledgement on them alongside the store instead of after it.
type Plan struct {
	Keys  Stored // Fresh is not known until Send
	mail  model.Key
	reqs  []wire.Request
	first int // index of the first receive row in reqs
}

// PlanStore builds the batch that stores every row of m: header, body,
// received, mail, msgid, one receive row per mailbox, the throw-in.
func PlanStore(m Mail) Plan {
	r := m.Rows
	reqs := make([]wire.Request, 0, 6+len(m.Mailboxes))
	add := func(t model.Table, content []byte) {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: t, Content: content})
	}
	add(model.Header, r.Parts.Header)
	add(model.Body, r.Parts.Body)
	add(model.Mail, r.Mail)
	if len(r.Parts.Received) > 0 {
		add(model.Received, r.Parts.Received)
	}
	if r.MsgID != nil {
		add(model.MsgID, r.MsgID)
	}
	receives := m.Receives
	if receives == nil {
		receives = ReceiveKeys(r.MailKey, m.Mailboxes)
	}
	// r.ReceivedKey is the key of r.Received, which a caller that adds its
	// trace field with Parts.WithTrace sets to Parts.Received.
	receivedKey := r.ReceivedKey
	if !bytes.Equal(r.Received, r.Parts.Received) {
		receivedKey = model.KeyOf(model.Received, r.Parts.Received)
	}
	p := Plan{Keys: Stored{Receives: receives, ReceivedKey: receivedKey}, mail: r.MailKey, first: len(reqs)}
	for _, mb := range m.Mailboxes {
		add(model.Receive, model.ReceiveContent(r.MailKey, mb))
	}
	if m.ThrowIn != nil {
		add(model.ThrowIn, m.ThrowIn)
		p.Keys.ThrowInKey = model.KeyOf(model.ThrowIn, m.ThrowIn)
		// In the same atomic batch: the attempt's rows are all there once
		// this column is (the armed acknowledgement waits for it).
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.ThrowIn, Ref: wire.Ref{ByKey: true, Key: p.Keys.ThrowInKey},
			Name: ColStored, Value: model.FlagSet})
	}
	p.reqs = reqs
	return p
}

// ColStored is the throw-in column the store batch sets (model.FlagSet):
// the attempt's rows, its Received fields among them, are durable.
const ColStored = "stored"

// Send writes the planned rows in one atomic, durable batch. A retry of
// the same mail finds the same rows (find-or-insert), so nothing is stored
// twice. An error means nothing may be acknowledged on its account.
func (p Plan) Send(ctx context.Context, db DB) (Stored, error) {
	res, err := db.Batch(ctx, p.reqs)
	if err != nil {
		return Stored{}, fmt.Errorf("store mail %s: %w", p.mail, err)
	}
	st := p.Keys
	st.Fresh = make([]bool, len(st.Receives))
	for i := range st.Fresh {
		st.Fresh[i] = res[p.first+i].New
	}
	return st, nil
}

// Store plans and sends m's rows (PlanStore, Plan.Send).
func Store(ctx context.Context, db DB, m Mail) (Stored, error) {
	return PlanStore(m).Send(ctx, db)
}

// Kind is the decision about a stored transaction.
type Kind int

// Kinds of Outcome.
const (
	// Undecided: the window passed without a verdict for every recipient,
	// or without the backed-up mark (451 4.7.1).
	Undecided Kind = iota
	// Retry: the filter asks the sender to come back (greylisting, 451 4.7.1).
	Retry
	// Rejected: every recipient's verdict is reject (550 5.7.1).
	Rejected
	// Accepted: at least one recipient accepted and backed up as required;
	// the accepted receive rows are to be acknowledged (250).
	Accepted
)

func (k Kind) String() string {
	switch k {
	case Retry:
		return "retry"
	case Rejected:
		return "rejected"
	case Accepted:
		return "accepted"
	}
	return "undecided"
}

// Outcome is what Watcher.Wait decided.
type Outcome struct {
	Kind     Kind
	Accepted []model.Key // receive rows to acknowledge (Kind Accepted)
	Rejected int         // recipients whose verdict is reject
	// Acked reports that every accepted row was already acknowledged (a
	// retry of a mail that got its 250 before).
	Acked bool
}

// Policy is how Watcher.Wait decides.
type Policy struct {
	Window time.Duration // how long to wait for the decision
	// MinCopies is 2 (strict: wait for the backed-up mark, SPEC §1) or 1
	// (degraded: the local durable copy suffices).
	MinCopies int
	// Since is when this attempt's mail was received. A Retry verdict
	// decided for an earlier attempt (its epoch is before Since) is not
	// this attempt's answer: spamd judges each attempt again (greylisting
	// passes when the sender came back), so Wait waits for that.
	Since time.Time
}

// Decide computes the outcome from the rows' current states; done is false
// while the answer may still change for the better. It is pure, so the rules
// are tested without a dbd:
//
//   - any recipient undecided (no verdict yet): wait;
//   - a Retry verdict with an epoch before since (decided for an earlier
//     attempt): wait, as for undecided;
//   - any Retry verdict and no other undecided: Retry (the filter wants the
//     sender to come back; accepting part now would make the retry deliver
//     the rest twice);
//   - every recipient rejected: Rejected;
//   - otherwise the accepted recipients must be backed up (strict) and then
//     the outcome is Accepted for them. Rejected recipients of a mixed
//     transaction are not delivered; the rejection digest tells their owner.
func Decide(keys []model.Key, states map[model.Key]model.State, minCopies int, since uint32) (Outcome, bool) {
	var o Outcome
	retry, unbacked, allAcked := false, false, true
	for _, k := range keys {
		s, seen := states[k]
		if !seen {
			return Outcome{}, false
		}
		_, epoch, v, ok := model.DecodeVerdict(s.Cols[model.ColVerdict])
		switch {
		case !ok, v == model.Retry && epoch < since:
			return Outcome{}, false
		case v == model.Retry:
			retry = true
		case v == model.Reject:
			o.Rejected++
		case v == model.Accept:
			if minCopies > 1 && s.Cols[model.ColBackedUp] != model.FlagSet {
				// Not returned at once: a Retry of this attempt
				// decides without it (nothing is acknowledged), and
				// waiting for the mark held the sender for the whole
				// window when the peer lagged, then said "undecided".
				unbacked = true
				continue
			}
			o.Accepted = append(o.Accepted, k)
			allAcked = allAcked && s.Cols[model.ColAcknowledged] == model.FlagSet
		}
	}
	switch {
	case retry:
		return Outcome{Kind: Retry}, true
	case unbacked:
		return Outcome{}, false
	case len(o.Accepted) == 0:
		o.Kind = Rejected
	default:
		o.Kind, o.Acked = Accepted, allAcked
	}
	return o, true
}

// Acknowledge durably marks the accepted receive rows acknowledged and links
// each to the received row of this delivery, in one batch with the
// requests also (the caller's bookkeeping, e.g. its reply on the throw-in).
// Only after it returns nil may smtpd answer 250: a mail is in a mailbox
// exactly when acknowledged (SPEC §5).
func Acknowledge(ctx context.Context, db DB, rows []model.Key, received model.Key, at time.Time, also ...wire.Request) error {
	res, err := db.Batch(ctx, ackRequests(rows, received, at, also))
	if err != nil {
		return fmt.Errorf("acknowledge %d receive rows: %w", len(rows), err)
	}
	for i := range res[:2*len(rows)] {
		if res[i].NotFound {
			return fmt.Errorf("acknowledge receive row %s: row vanished", rows[i/2])
		}
	}
	return nil
}

// ackRequests is Acknowledge's batch: each row marked acknowledged and
// linked to the received row of this delivery (at: the time, in ms),
// then also.
func ackRequests(rows []model.Key, received model.Key, at time.Time, also []wire.Request) []wire.Request {
	link := model.ReceivedColumn(received)
	ms := uint64(max(at.UnixMilli(), 1))
	reqs := make([]wire.Request, 0, 2*len(rows)+len(also))
	for _, k := range rows {
		ref := wire.Ref{ByKey: true, Key: k}
		reqs = append(reqs,
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: link, Value: ms})
	}
	return append(reqs, also...)
}

// Armer is dbd's arm operation (*client.Client implements it).
type Armer interface {
	Arm(ctx context.Context, conds []wire.ArmCond, reqs []wire.Request, wait time.Duration) (bool, []wire.Result, error)
}

// Armed is an acknowledgement handed to dbd before the decision: dbd
// applies it in the commit that gives every receive row an accept verdict
// (and, strict, the backed-up mark), so the verdict and the
// acknowledgement cost one fsync instead of two, and smtpd's own
// Acknowledge after the verdict is not needed (docs/smtpd.md §4).
type Armed struct {
	done   chan struct{}
	fired  bool
	err    error
	cancel context.CancelFunc
}

// Arm starts an armed acknowledgement of rows (see Acknowledge) that dbd
// keeps until every row has an accept verdict (and, if minCopies > 1, the
// backed-up mark), at most wait. The answer comes in the background; see
// Fired and Withdraw.
//
// With throwIn (not the zero key) it also waits for that attempt's store
// (ColStored): smtpd arms alongside its store, and the receive rows of a
// mail retried after an earlier attempt was accepted meet the verdict
// condition already. Without this condition the acknowledgement could be
// applied before the attempt's own rows, linking the mail to a Received
// row not (or, if the store failed, never) there.
func Arm(ctx context.Context, db Armer, rows []model.Key, received, throwIn model.Key, at time.Time, minCopies int, wait time.Duration, also ...wire.Request) *Armed {
	conds := make([]wire.ArmCond, 0, 2*len(rows)+1)
	if throwIn != (model.Key{}) {
		conds = append(conds, wire.ArmCond{Table: model.ThrowIn, Key: throwIn, Name: ColStored, Mask: model.FlagSet, Want: model.FlagSet})
	}
	for _, k := range rows {
		conds = append(conds, wire.ArmCond{Table: model.Receive, Key: k, Name: model.ColVerdict, Mask: 0xff, Want: uint64(model.Accept)})
		if minCopies > 1 {
			conds = append(conds, wire.ArmCond{Table: model.Receive, Key: k, Name: model.ColBackedUp, Mask: ^uint64(0), Want: model.FlagSet})
		}
	}
	reqs := ackRequests(rows, received, at, also)
	ctx, cancel := context.WithCancel(ctx)
	a := &Armed{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(a.done)
		var res []wire.Result
		a.fired, res, a.err = db.Arm(ctx, conds, reqs, wait)
		if a.err == nil && a.fired {
			for i := range res[:2*len(rows)] {
				if res[i].NotFound {
					a.fired, a.err = false, fmt.Errorf("armed acknowledgement of receive row %s: row vanished", rows[i/2])
					return
				}
			}
		}
	}()
	return a
}

// Fired waits up to d for dbd's answer and reports whether the rows are
// durably acknowledged. An error answer (a dbd without arm says
// bad-request) is returned; a wait that ends first is not an error.
func (a *Armed) Fired(d time.Duration) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.done:
		return a.fired, a.err
	case <-t.C:
		return false, nil
	}
}

// Withdraw waits up to d for dbd's answer (dbd ends the request when its
// wait is over), then withdraws it, and reports whether it fired: if so
// the rows are acknowledged and the mail is in its mailboxes. err is an
// error answer that came within d (a dbd without arm says bad-request).
// An answer lost with the withdrawal leaves the outcome unknown, reported
// as not fired: a sender told 451 then comes back and finds the mail
// acknowledged (250 at once), so nothing is lost or stored twice.
func (a *Armed) Withdraw(d time.Duration) (fired bool, err error) {
	fired, err = a.Fired(d)
	a.cancel()
	<-a.done
	return fired || a.fired && a.err == nil, err
}
