package mailbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// accountDB serves one account's rows (its account row and password rows)
// to Login; the rest of DB is slowDB's (not found).
type accountDB struct {
	slowDB
	mu   sync.Mutex
	rows map[model.Key]*wire.Row
}

func (d *accountDB) FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.rows[k]; ok {
		return r, nil
	}
	return nil, client.ErrNotFound
}

// setPassword gives login the password hashed with cheap argon2id
// parameters, as a new password row the account links to.
func (d *accountDB) setPassword(t *testing.T, login, password string, at time.Time) {
	t.Helper()
	hash, err := passwd.Hash(password, passwd.Params{MemoryKiB: 8, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	pc := model.PasswordContent(login, hash)
	pk := model.KeyOf(model.Text, pc)
	ak := model.KeyOf(model.POP3, model.AccountContent(login))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rows == nil {
		d.rows = map[model.Key]*wire.Row{}
	}
	d.rows[pk] = &wire.Row{Table: model.Text, Key: pk, Content: pc}
	acct := d.rows[ak]
	if acct == nil {
		acct = &wire.Row{Table: model.POP3, Key: ak, State: model.State{Cols: map[string]uint64{}}}
		d.rows[ak] = acct
	}
	acct.State.Cols[model.PasswordColumn(pk)] = uint64(at.UnixMilli())
}

// TestLoginCache: a login whose password argon2id confirmed is taken
// again without a check until the cache's time is up; a wrong password is
// checked every time and refused; a new password misses the cache (the
// old one is refused, checked); an account gone from dbd is refused even
// though its password is cached; a cache of one login forgets the other.
func TestLoginCache(t *testing.T) {
	db := &accountDB{slowDB: slowDB{release: make(chan struct{})}}
	close(db.release)
	t0 := time.Unix(1_800_000_000, 0)
	db.setPassword(t, "alice", "right", t0)
	db.setPassword(t, "bob", "bobs", t0)

	s := NewWith(db, Options{LoginCacheSize: 1})
	now := t0
	s.logins.now = func() time.Time { return now }
	checks := 0
	s.check = func(password, hash string) (bool, error) {
		checks++
		return passwd.Check(password, hash)
	}
	login := func(user, password string, wantOK bool, wantChecks int) {
		t.Helper()
		before := checks
		a, err := s.Login(context.Background(), user, password)
		if wantOK && err != nil || !wantOK && !errors.Is(err, ErrAuth) {
			t.Fatalf("login %s/%s: %v, want ok %v", user, password, err, wantOK)
		}
		if got := checks - before; got != wantChecks {
			t.Fatalf("login %s/%s ran %d password checks, want %d", user, password, got, wantChecks)
		}
		if err == nil && a.Cached != (wantChecks == 0) {
			t.Fatalf("login %s/%s: Account.Cached %v after %d checks", user, password, a.Cached, wantChecks)
		}
	}
	login("alice", "right", true, 1)
	login("alice", "right", true, 0) // cached
	login("Alice", "right", true, 0) // the same account
	login("alice", "wrong", false, 1)
	login("alice", "wrong", false, 1) // failures are never cached
	login("alice", "right", true, 0)

	now = now.Add(DefaultLoginCacheTTL - time.Second)
	login("alice", "right", true, 0)
	now = now.Add(time.Second)
	login("alice", "right", true, 1) // expired: checked, cached again
	login("alice", "right", true, 0)

	// A new password: the old one misses the cache and is refused.
	db.setPassword(t, "alice", "new", now.Add(time.Minute))
	login("alice", "right", false, 1)
	login("alice", "new", true, 1)
	login("alice", "new", true, 0)

	// The cache holds one login: bob's pushes alice's out.
	login("bob", "bobs", true, 1)
	login("bob", "bobs", true, 0)
	login("alice", "new", true, 1)

	// Gone from dbd: refused without a check, cache or not.
	db.mu.Lock()
	delete(db.rows, model.KeyOf(model.POP3, model.AccountContent("alice")))
	db.mu.Unlock()
	login("alice", "new", false, 0)

	// Off: every login is checked.
	off := NewWith(db, Options{LoginCacheTTL: -1})
	off.check = s.check
	s = off
	login("bob", "bobs", true, 1)
	login("bob", "bobs", true, 1)
}
