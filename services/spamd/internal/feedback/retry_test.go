package feedback

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/spamdtest"
)

// flakyDB is the in-memory dbd whose header reads fail while failing is
// set (a dbd restart, a timeout); the Learner's List and watch are not
// used by these tests.
type flakyDB struct {
	*spamdtest.DB
	mu      sync.Mutex
	failing bool
}

var errFlaky = errors.New("flaky: connection reset")

func (f *flakyDB) setFailing(on bool) {
	f.mu.Lock()
	f.failing = on
	f.mu.Unlock()
}

func (f *flakyDB) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	f.mu.Lock()
	fail := f.failing && t == model.Header
	f.mu.Unlock()
	if fail {
		return nil, errFlaky
	}
	return f.DB.FindKey(ctx, t, k)
}

func (f *flakyDB) List(context.Context, model.Table, model.Key, uint64, int) ([]wire.Row, error) {
	return nil, nil
}

func (f *flakyDB) WatchChildren(context.Context, model.Table, model.Key) (*client.Stream, error) {
	return nil, errors.New("flaky: no watch")
}

// storeFeedback stores mail i and a user's spam verdict on it, and
// returns the feedback row as the Learner reads it.
func storeFeedback(t *testing.T, db *flakyDB, i int) *wire.Row {
	t.Helper()
	rows := model.NewMailRows([]byte("From: x@y.example\r\nSubject: pills " + string(rune('a'+i)) + "\r\n\r\nbuy now\r\n"))
	db.Put(model.Header, rows.Parts.Header, "", 0)
	db.Put(model.Body, rows.Parts.Body, "", 0)
	db.Put(model.Mail, rows.Mail, "", 0)
	rk := db.Put(model.Receive, model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent("alice@x.example"))), "", 0)
	fk := db.Put(model.Text, model.FeedbackContent(rk, "alice"), model.ColFeedback, model.FeedbackValue(testTime, true))
	row, err := db.DB.FindKey(context.Background(), model.Text, fk)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

var testTime = time.UnixMilli(1_700_000_000_000)

// TestApplyAfterReadError: a feedback row whose mail could not be read
// (a transient dbd error, which ends the watch) is taught when it is
// applied again after the re-subscription; before, the Learner had
// already recorded the row as seen and skipped it for good.
func TestApplyAfterReadError(t *testing.T) {
	ctx := context.Background()
	db := &flakyDB{DB: spamdtest.NewDB()}
	row := storeFeedback(t, db, 0)
	h := &models{m: classify.New()}
	l := New(Config{DB: db, Models: h})
	db.setFailing(true)
	if err := l.Apply(ctx, row); !errors.Is(err, errFlaky) {
		t.Fatalf("Apply with a failing dbd = %v, want %v", err, errFlaky)
	}
	db.setFailing(false)
	if err := l.Apply(ctx, row); err != nil { // catchUp after Resubscribe
		t.Fatal(err)
	}
	if s := h.m.Stats(); s.Spam != 1 || s.Ham != 0 {
		t.Errorf("model has %d ham, %d spam after the row was applied again; want 0, 1", s.Ham, s.Spam)
	}
}

// TestNewModelAfterReadError: when teaching a newly pushed model every
// feedback fails half-way (a transient dbd error), the next check teaches
// it the rest, each mail once; before, the Learner took the model as
// taught and the rest of the feedback never reached it.
func TestNewModelAfterReadError(t *testing.T) {
	ctx := context.Background()
	db := &flakyDB{DB: spamdtest.NewDB()}
	h := &models{m: classify.New()}
	l := New(Config{DB: db, Models: h})
	const n = 3
	for i := range n {
		if err := l.Apply(ctx, storeFeedback(t, db, i)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := classify.New()
	h.set(fresh)
	db.setFailing(true)
	if err := l.checkModel(ctx); !errors.Is(err, errFlaky) {
		t.Fatalf("checkModel with a failing dbd = %v, want %v", err, errFlaky)
	}
	db.setFailing(false)
	for range 2 {
		if err := l.checkModel(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := fresh.Stats(); s.Spam != n || s.Ham != 0 {
		t.Errorf("new model has %d ham, %d spam; want 0, %d", s.Ham, s.Spam, n)
	}
}
