package feedback

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
)

// models is a swappable model holder (modelstore.Live in spamd).
type models struct {
	mu sync.Mutex
	m  *classify.Model
}

func (h *models) Current() *classify.Model {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m
}

func (h *models) set(m *classify.Model) {
	h.mu.Lock()
	h.m = m
	h.mu.Unlock()
}

// deliver stores a mail in a mailbox as smtpd does and returns its
// receive key.
func deliver(t *testing.T, ctx context.Context, db *client.Client, i int) model.Key {
	t.Helper()
	raw := fmt.Sprintf("From: x%d@y.example\r\nSubject: cheap pills %d\r\n\r\nbuy viagra now %d\r\n", i, i, i)
	rows := model.NewMailRows([]byte(raw))
	box := model.MailboxContent("alice@x.example")
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, box))
	if _, err := db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: box},
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
	}); err != nil {
		t.Fatal(err)
	}
	return model.KeyOf(model.Receive, rc)
}

// feedback writes a user's verdict as imapd does (mailbox role).
func feedback(t *testing.T, ctx context.Context, db *client.Client, rk model.Key, login string, at time.Time, spam bool) {
	t.Helper()
	c := model.FeedbackContent(rk, login)
	if _, err := db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: c},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: c}, Name: model.ColFeedback, Value: model.FeedbackValue(at, spam)},
	}); err != nil {
		t.Fatal(err)
	}
}

func waitStats(t *testing.T, m *classify.Model, ham, spam uint32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := m.Stats()
		if s.Ham == ham && s.Spam == spam {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("model has %d ham, %d spam; want %d, %d", s.Ham, s.Spam, ham, spam)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLearnerFollowsFeedback(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, mbx, sp := e.Client("admin"), e.Client("mailbox"), e.Client("spamd")
	r1, r2 := deliver(t, ctx, admin, 1), deliver(t, ctx, admin, 2)
	t0 := time.UnixMilli(1_700_000_000_000)
	feedback(t, ctx, mbx, r1, "alice", t0, true) // before spamd starts: listed
	h := &models{m: classify.New()}
	l := New(Config{DB: sp, Models: h, Check: 10 * time.Millisecond, Retry: 10 * time.Millisecond})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { l.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	m := h.Current()
	waitStats(t, m, 0, 1)
	// A second user says spam about the same mail later: still one mail.
	feedback(t, ctx, mbx, r1, "bob", t0.Add(time.Second), true)
	// Watched: a new row.
	feedback(t, ctx, mbx, r2, "alice", t0, false)
	waitStats(t, m, 1, 1)
	// Flip: alice moves mail 1 out of Junk later: unlearn spam, learn ham.
	feedback(t, ctx, mbx, r1, "alice", t0.Add(2*time.Second), false)
	waitStats(t, m, 2, 0)
	// A new model is pushed: it is taught everything once.
	fresh := classify.New()
	h.set(fresh)
	waitStats(t, fresh, 2, 0)
	// Feedback about a mail not here yet (replication lag) is applied
	// once the mail arrives.
	raw := "From: z@y.example\r\nSubject: late\r\n\r\nlate body\r\n"
	rows := model.NewMailRows([]byte(raw))
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent("alice@x.example")))
	feedback(t, ctx, mbx, model.KeyOf(model.Receive, rc), "alice", t0, true)
	if _, err := admin.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
	}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, fresh, 2, 1)
}

// TestApplyIdempotent: a replayed row, or a second Learner (another spamd
// instance) reading the same rows, counts each mail once.
func TestApplyIdempotent(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, sp := e.Client("admin"), e.Client("spamd")
	rk := deliver(t, ctx, admin, 1)
	feedback(t, ctx, e.Client("mailbox"), rk, "alice", time.UnixMilli(5000), true)
	row, err := sp.FindKey(ctx, model.Text, model.KeyOf(model.Text, model.FeedbackContent(rk, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	var stats []classify.Stats
	for range 2 {
		h := &models{m: classify.New()}
		l := New(Config{DB: sp, Models: h})
		for range 3 {
			if err := l.Apply(ctx, row); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.catchUp(ctx); err != nil {
			t.Fatal(err)
		}
		stats = append(stats, h.m.Stats())
		if l.applied != 1 {
			t.Fatalf("learn steps %d, want 1", l.applied)
		}
	}
	if stats[0] != stats[1] || stats[0].Spam != 1 {
		t.Fatalf("two learners: %+v", stats)
	}
}
