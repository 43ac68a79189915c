package notify

import (
	"context"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	rules "github.com/twinmx/twinmx/pkg/wire/config/smsrules"
	"github.com/twinmx/twinmx/services/smsd/internal/claim"
	"github.com/twinmx/twinmx/services/smsd/internal/gateway"
)

// TestHeldNumberNoClaimStorm: a look that only holds a number back (the
// rate limit) writes its claim, and that write changes the receive row,
// so the watch pokes the row and it is looked at again at once. That
// look wrote the claim again (a new, higher value: another change,
// another poke), so smsd wrote and replicated a claim per round trip
// until the rate window let the number through, up to an hour. A look
// before the held number's time now writes nothing, as after a failed
// attempt.
func TestHeldNumberNoClaimStorm(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db := &rowDB{rows: map[model.Key]map[string]uint64{}}
	gw := &fakeSMS{}
	lim := &gateway.Limiter{N: 1, Window: time.Hour}
	lim.Reserve("+4910000001", now.Add(-time.Minute)) // its one SMS this hour is used
	e, err := New(Config{DB: db, Site: claim.SiteA, SMS: gw, Limit: lim, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	key := model.KeyOf(model.Receive, []byte("held"))
	send := func(ctx context.Context, to string) error { return gw.Send(ctx, to, "hi") }
	look := func() time.Time {
		t.Helper()
		row, _ := db.FindMeta(context.Background(), model.Receive, key)
		next, err := e.handle(context.Background(), &job{key: key, row: row, seen: now}, kindSMS, []string{"+4910000001"}, "http", send)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	first := look()
	if first.IsZero() || !first.After(now) {
		t.Fatalf("next look at %v, want a later one for the held number", first)
	}
	written := db.col(key, kindSMS.claimCol())
	// The poke from the claim write: a look moments later.
	for i := range 3 {
		now = now.Add(10 * time.Millisecond)
		if next := look(); !next.Equal(first) {
			t.Errorf("look %d after the poke: next at %v, want %v", i+2, next, first)
		}
	}
	if got := db.col(key, kindSMS.claimCol()); got != written {
		t.Errorf("the looks after the poke wrote the claim again (%x, was %x): each write pokes the row once more", got, written)
	}
	if len(gw.sent) != 0 {
		t.Errorf("sent %q to a held number", gw.sent)
	}
}

// mailStoreDB is storeDB with MailRows: the rows of a receive row's
// mail that are here, as dbd answers.
type mailStoreDB struct{ storeDB }

func (d *mailStoreDB) MailRows(ctx context.Context, receive model.Key) ([]wire.Row, error) {
	r, err := d.FindKey(ctx, model.Receive, receive)
	if err != nil {
		return nil, err
	}
	mk, _, err := model.ParseReceiveContent(r.Content)
	if err != nil {
		return nil, err
	}
	m, err := d.FindKey(ctx, model.Mail, mk)
	if err != nil {
		return nil, nil
	}
	out := []wire.Row{*m}
	hk, bk, err := model.ParseMailContent(m.Content)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		t model.Table
		k model.Key
	}{{model.Header, hk}, {model.Body, bk}} {
		if row, err := d.FindKey(ctx, p.t, p.k); err == nil {
			out = append(out, *row)
		}
	}
	return out, nil
}

// TestForwardMailNotHereYet: a forward copy of a mail whose body has not
// replicated to this site (the site that took over from a dead one)
// counted each look as a failed relay attempt, and after --max-tries
// gave the address up for good (fwd.f): once the body arrived the copy
// was never sent. A mail not here is now what docs/smsd.md §1 says: a
// look that backs off, nothing counted against the address, and the
// copy sent once the mail is here.
func TestForwardMailNotHereYet(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db := &mailStoreDB{storeDB{rows: map[model.Table]map[model.Key]*wire.Row{}}}
	rl := &fakeRelay{calls: map[string]int{}, answers: map[string]error{}}
	const maxTries = 3
	e, err := New(Config{DB: db, Site: claim.SiteA, Relay: rl, MaxTries: maxTries, RetryMin: time.Second, RetryMax: 3 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const address, to = "u@example.test", "copy@elsewhere.test"
	fwdKey := db.put(model.Text, rules.ForwardContent(address, to), nil)
	box := db.put(model.Mailbox, model.MailboxContent(address), map[string]uint64{
		model.LinkColumn(rules.ForwardPrefix, fwdKey): model.MemberValue(now.Add(-time.Hour), true)})
	header := []byte("From: a@b.example\r\nSubject: hello\r\n\r\n")
	body := []byte("first line\r\n")
	mailContent := model.MailContent(model.KeyOf(model.Header, header), model.KeyOf(model.Body, body))
	db.put(model.Mail, mailContent, nil)
	db.put(model.Header, header, nil)
	key := db.put(model.Receive, model.ReceiveContent(model.KeyOf(model.Mail, mailContent), box), map[string]uint64{
		model.ColAcknowledged: model.FlagSet, model.ColVerdict: model.EncodeVerdict(model.SourceFilter, 1, model.Accept)})

	for i := range maxTries + 2 {
		next, again := e.process(context.Background(), key)
		if !again {
			break
		}
		if !next.After(now) {
			t.Fatalf("look %d: next look at %v, not after now", i+1, next)
		}
		now = next
	}
	row, _ := db.FindKey(context.Background(), model.Receive, key)
	if v := row.State.Col(kindForward.goneCol(to)); v != 0 {
		t.Errorf("the address is given up (fwd.f) while the mail is not here")
	}
	if v := row.State.Col(kindForward.tryCol(to)); v != 0 {
		t.Errorf("%d failed relay attempts counted while the mail is not here", v)
	}
	// The body arrives; the receive row changes (or smsd restarts).
	db.put(model.Body, body, nil)
	if _, again := e.process(context.Background(), key); again {
		t.Error("a row served completely asks for another look")
	}
	if rl.calls[to] != 1 {
		t.Errorf("relay calls to %s: %d, want one copy once the mail is here", to, rl.calls[to])
	}
}
