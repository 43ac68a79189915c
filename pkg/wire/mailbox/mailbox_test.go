package mailbox

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// slowDB answers every account lookup with "not found" once released,
// counting the lookups in progress. Only FindKey is used by Login.
type slowDB struct {
	DB
	release      chan struct{}
	now, maxSeen atomic.Int32
}

func (d *slowDB) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	n := d.now.Add(1)
	defer d.now.Add(-1)
	for {
		m := d.maxSeen.Load()
		if n <= m || d.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-d.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return nil, client.ErrNotFound
}

// TestLoginsQueue: at most maxChecks logins run at once (each may hold an
// argon2id check's memory); the others wait, and one whose ctx ends while
// waiting gets ctx's error, not ErrAuth.
func TestLoginsQueue(t *testing.T) {
	db := &slowDB{release: make(chan struct{})}
	s := NewWith(db, Options{MaxChecks: 2})
	s.dummy = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA" // cheap: tests only
	s.dummyOnce.Do(func() {})
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			_, err := s.Login(context.Background(), "bob", "pw")
			errs <- err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.now.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a third lookup, if the bound were broken
	if n := db.maxSeen.Load(); n != 2 {
		t.Fatalf("%d logins ran at once, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Login(ctx, "carol", "pw"); err == nil || err == ErrAuth {
		t.Fatalf("a login that timed out waiting got %v, want the context's error", err)
	}
	close(db.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != ErrAuth {
			t.Errorf("login of an unknown user: %v, want ErrAuth", err)
		}
	}
}

// oldDB is a dbd from before op mails: MailsRows is refused as an unknown
// op; MailRows serves one mail.
type oldDB struct {
	DB
	mails map[model.Key][]byte
}

func (d *oldDB) MailsRows(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, error) {
	return nil, &wire.Error{Code: wire.CodeBadRequest, Msg: "unknown op"}
}

func (d *oldDB) MailRows(ctx context.Context, k model.Key) ([]wire.Row, error) {
	raw, ok := d.mails[k]
	if !ok {
		return nil, client.ErrNotFound
	}
	p := model.Split(raw)
	return []wire.Row{{Table: model.Receive, Key: k}, {Table: model.Header, Content: p.Header},
		{Table: model.Body, Content: p.Body}, {Table: model.Received, Content: p.Received}}, nil
}

// TestFetchManyFallsBack: against a dbd without op mails, FetchMany reads
// mail by mail, with per-mail results.
func TestFetchManyFallsBack(t *testing.T) {
	a, b := model.Key{1}, model.Key{2}
	db := &oldDB{mails: map[model.Key][]byte{a: []byte("Received: x\r\nSubject: a\r\n\r\nA\r\n")}}
	raws, errs := New(db).FetchMany(context.Background(), []Message{{Receive: a}, {Receive: b}}, [][]string{nil, nil})
	if errs[0] != nil || string(raws[0]) != string(db.mails[a]) {
		t.Fatalf("mail a: %q, %v", raws[0], errs[0])
	}
	if !errors.Is(errs[1], client.ErrNotFound) {
		t.Fatalf("missing mail b: %v, want ErrNotFound", errs[1])
	}
}

// rowsDB serves rows by table and key, as dbd's find does.
type rowsDB struct {
	DB
	rows map[model.Table]map[model.Key][]byte
}

func (d *rowsDB) put(t model.Table, content []byte) model.Key {
	k := model.KeyOf(t, content)
	if d.rows[t] == nil {
		d.rows[t] = map[model.Key][]byte{}
	}
	d.rows[t][k] = content
	return k
}

func (d *rowsDB) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	c, ok := d.rows[t][k]
	if !ok {
		return nil, client.ErrNotFound
	}
	return &wire.Row{Table: t, Key: k, Content: c, Size: uint64(len(c)), HasContent: true}, nil
}

func (d *rowsDB) FindMeta(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	r, err := d.FindKey(ctx, t, k)
	if err == nil {
		r.Content, r.HasContent = nil, false
	}
	return r, err
}

// TestSizeWithReturnPath: the size of a mail smtpd delivered — its
// Return-Path and Received fields in the received row — is the length of
// what Fetch returns, whichever of those fields the mailbox's header
// filter drops.
func TestSizeWithReturnPath(t *testing.T) {
	raw := []byte("Received: from relay\r\nSubject: s\r\nReturn-Path: <old@x>\r\n\r\nbody\r\n")
	rows := model.NewMailRows(raw)
	p, err := rows.Parts.WithTrace([]byte("Received: from client by mx; now\r\n"))
	if err == nil {
		p, err = p.WithTrace([]byte("Return-Path: <a@b.example>\r\n"))
	}
	if err != nil {
		t.Fatal(err)
	}
	db := &rowsDB{rows: map[model.Table]map[model.Key][]byte{}}
	db.put(model.Header, p.Header)
	db.put(model.Body, p.Body)
	mk := db.put(model.Mail, rows.Mail)
	rk := db.put(model.Received, p.Received)
	m := Message{Mail: mk, State: model.State{Cols: map[string]uint64{model.ColAcknowledged: model.FlagSet, model.ReceivedColumn(rk): 1}}}
	whole, err := model.Join(p)
	if err != nil {
		t.Fatal(err)
	}
	s := New(db)
	for _, drop := range [][]string{nil, {"received"}, {"return-path"}, {"received", "return-path"}, {"subject"}} {
		n, err := s.Size(context.Background(), m, drop)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(DropFields(whole, drop)); n != int64(want) {
			t.Errorf("drop %v: size %d, want %d", drop, n, want)
		}
	}

	// A mail that begins with a continuation line, stored with trace fields
	// in front (smtpd before 2026-12-03): they do not join, Fetch serves
	// the mail without them, and Size counts what Fetch serves.
	odd := model.NewMailRows([]byte(" lead\r\nSubject: s\r\n\r\nbody\r\n"))
	q := odd.Parts // WithTrace refuses this now: the record is written by hand
	rcvd := "Received: from client by mx; now\r\n"
	q.Received = append([]byte{0, byte(len(rcvd))}, rcvd...)
	db.put(model.Header, q.Header)
	db.put(model.Body, q.Body)
	m.Mail = db.put(model.Mail, odd.Mail)
	rk = db.put(model.Received, q.Received)
	m.State = model.State{Cols: map[string]uint64{model.ColAcknowledged: model.FlagSet, model.ReceivedColumn(rk): 1}}
	if _, err := model.Join(q); err == nil {
		t.Fatal("the odd mail's trace fields join; the case tests nothing")
	}
	if n, err := s.Size(context.Background(), m, nil); err != nil || n != int64(len(q.Header)+len(q.Body)) {
		t.Errorf("odd mail: size %d %v, want %d (served without trace fields)", n, err, len(q.Header)+len(q.Body))
	}
}
