package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/connlimit"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
)

// Store is what a session needs of storage; *store.Store implements it.
type Store interface {
	Login(ctx context.Context, login, password string) (*mailbox.Account, error)
	Incarnation(ctx context.Context) (uint64, error)
	Fetch(ctx context.Context, m mailbox.Message, drop []string) ([]byte, error)
	FetchOrigin(ctx context.Context, m mailbox.Message, drop []string) ([]byte, mailbox.Origin, error)
	ReadAhead(ctx context.Context, ms []mailbox.Message, drops [][]string, limit int, timeout time.Duration) *mailbox.Ahead
	ReadAheadHeads(ctx context.Context, ms []mailbox.Message, drops [][]string, limit int, timeout time.Duration) *mailbox.Ahead
	Size(ctx context.Context, m mailbox.Message, drop []string) (int64, error)
	Delete(ctx context.Context, keys []model.Key) error
	Watch(ctx context.Context, box model.Key) (store.Events, error)
	WatchText(ctx context.Context, k model.Key) (store.Events, error)
	SetColumns(ctx context.Context, texts [][]byte, sets []store.ColumnSet) error
	Keyword(ctx context.Context, k model.Key) (string, bool, error)

	UserFolders(ctx context.Context, login string) ([]store.Folder, error)
	SystemFolderState(ctx context.Context, login string, id model.FolderID) (model.State, error)
	CreateFolder(ctx context.Context, login string, id model.FolderID, name string, now time.Time) error
	RenameFolders(ctx context.Context, login string, renames []store.Rename, now time.Time) error
	DeleteFolder(ctx context.Context, login string, f store.Folder, now time.Time) error
	KeepFolder(ctx context.Context, login string, id model.FolderID, now time.Time) error
	Subscribe(ctx context.Context, login string, id model.FolderID, st model.State, on bool, now time.Time) error
	Rows(ctx context.Context, parent model.Key, after uint64, appended bool) ([]mailbox.Message, uint64, error)
	Placements(ctx context.Context, folder model.Key, inc, after uint64) ([]store.PlacedRow, uint64, error)
	Place(ctx context.Context, ps []model.Placement) ([]uint64, error)
	Validity(ctx context.Context, folder model.Key, inc uint64) (uint64, error)
	FindReceive(ctx context.Context, k model.Key) (*wire.Row, error)
	Append(ctx context.Context, a store.Appendage) (model.Key, error)
}

var _ Store = (*store.Store)(nil)

// Config configures a Backend. Zero values mean the defaults.
type Config struct {
	Store   Store            // required
	Logger  *slog.Logger     // default: discard
	Metrics *metrics.Metrics // required
	// AllowPlaintext lets clients log in without TLS from any address.
	// Without it, only loopback clients may (SPEC §8). Default false.
	AllowPlaintext bool
	// PlaintextFrom reports whether a client at an address may log in
	// without TLS. Default IsLoopback.
	PlaintextFrom func(net.Addr) bool
	// DBTimeout bounds one storage call. Default 30s.
	DBTimeout time.Duration
	// WatchRetry is the pause before a broken mailbox watch is opened
	// again. Default 1s.
	WatchRetry time.Duration
	// IdleKeepalive is how often an IDLE with nothing to report repeats
	// the message count, so NAT gateways and firewalls along the way do
	// not drop the quiet connection (Dovecot: "* OK Still here" every
	// 2 minutes). Default 2 minutes.
	IdleKeepalive time.Duration
	// Now is the clock for flag, folder and move changes. Default time.Now.
	Now func() time.Time
	// AuthLimit refuses logins from an address with too many recent
	// failures (nil: no limit).
	AuthLimit *mailbox.AuthLimiter
	// AppendMemory is the bytes of APPENDed mails all sessions may hold at
	// once, taken as a literal's bytes arrive (appendmem.go): an APPEND
	// that finds no room waits (up to AppendWait), then gets NO [LIMIT].
	// At least MinAppendMemory (81 MiB: one mail of the APPENDLIMIT at
	// its peak). Default 256 MiB.
	AppendMemory int64
	// AppendMemoryPerAccount is how much of AppendMemory the sessions of
	// one account may hold at once, so that one account with many
	// connections cannot take it all: an APPEND over it waits (up to
	// AppendWait) for the account's other APPENDs, then gets NO [LIMIT]
	// as when AppendMemory is full. Default
	// DefaultAppendMemoryPerAccount; < 0: no share, AppendMemory bounds
	// each account. Kept within MinAppendMemory and AppendMemory (see
	// AppendMemoryBounds).
	AppendMemoryPerAccount int64
	// AppendWait is how long an APPEND waits for room in AppendMemory or
	// in the account's share of it. Default DBTimeout.
	AppendWait time.Duration
	// AuthFailDelay is the least time before a failed login is answered,
	// so guessing is slow and an unknown login is not told apart by
	// timing (0: none).
	AuthFailDelay time.Duration
	// Cache keeps what FETCH derives from mails' bytes, shared by all
	// sessions (see package mailcache). Default nil: nothing cached.
	Cache *mailcache.Cache
}

// Backend makes Sessions. It is safe for concurrent use.
type Backend struct {
	cfg     Config
	appends *appendBudget   // AppendMemory, AppendMemoryPerAccount
	ctx     context.Context // the server's: sessions derive theirs from it
	nextID  atomic.Uint64
	watches *watchHub
}

// NewBackend returns a Backend whose sessions stop when ctx ends.
func NewBackend(ctx context.Context, cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DBTimeout <= 0 {
		cfg.DBTimeout = 30 * time.Second
	}
	if cfg.WatchRetry <= 0 {
		cfg.WatchRetry = time.Second
	}
	if cfg.IdleKeepalive <= 0 {
		cfg.IdleKeepalive = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PlaintextFrom == nil {
		cfg.PlaintextFrom = IsLoopback
	}
	cfg.AppendMemory, cfg.AppendMemoryPerAccount = AppendMemoryBounds(cfg.AppendMemory, cfg.AppendMemoryPerAccount)
	if cfg.AppendWait <= 0 {
		cfg.AppendWait = cfg.DBTimeout
	}
	return &Backend{cfg: cfg, ctx: ctx, appends: newAppendBudget(cfg.AppendMemory, cfg.AppendMemoryPerAccount), watches: newWatchHub(ctx, cfg.Store, cfg.WatchRetry, cfg.Logger,
		func() { cfg.Metrics.Errors.WithLabelValues("watch").Inc() })}
}

// NewSession is imapserver.Options.NewSession.
func (b *Backend) NewSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ctx, cancel := context.WithCancel(b.ctx)
	id := b.nextID.Add(1)
	s := &Session{
		b: b, conn: c, ctx: ctx, cancel: cancel,
		log: b.cfg.Logger.With("conn", id, "remote", c.NetConn().RemoteAddr().String()),
	}
	b.cfg.Metrics.Sessions.Inc()
	b.cfg.Metrics.SessionsActive.Inc()
	return s, nil, nil
}

// Session is one IMAP connection's state. go-imap calls it from one
// goroutine at a time (see the package doc).
type Session struct {
	b      *Backend
	conn   *imapserver.Conn
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	acct *mailbox.Account
	sel  *selected

	// idleMu is held by Idle while it runs and by Close. go-imap
	// (v2.0.0-beta.8 idle.go) returns from IDLE on a client's EOF without
	// waiting for Idle, and then calls Close from another goroutine: Close
	// must not tear down sel under a running Idle (a data race, seen by
	// TestIdleHalfClose under -race).
	idleMu sync.Mutex
}

var (
	_ imapserver.Session     = (*Session)(nil)
	_ imapserver.SessionMove = (*Session)(nil)
)

// errTemporary is what a client sees for any failure that is not its
// fault (dbd unreachable, a bug): details go to the log only.
var errTemporary = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
	Text: "Temporary failure, try again later"}

// track counts a command and maps its error to the client's reply: the one
// place errors become replies. It recovers a panic, logs the stack and
// counts it. Use as: defer s.track("fetch", &err)().
func (s *Session) track(cmd string, err *error) func() {
	return func() {
		m := s.b.cfg.Metrics
		if v := recover(); v != nil {
			s.log.Error("panic in command", "command", cmd, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			m.Errors.WithLabelValues("panic").Inc()
			*err = errTemporary
		}
		var ie *imap.Error
		switch {
		case *err == nil:
			m.Commands.WithLabelValues(cmd, "ok").Inc()
		case errors.As(*err, &ie):
			m.Commands.WithLabelValues(cmd, "no").Inc()
		case errors.Is(*err, errClientGone):
			m.Commands.WithLabelValues(cmd, "error").Inc()
		default:
			m.Commands.WithLabelValues(cmd, "error").Inc()
			m.Errors.WithLabelValues("dbd").Inc()
			s.log.Warn("command failed", "command", cmd, "err", *err)
			*err = errTemporary
		}
	}
}

// errClientGone marks a failed write to the client: nothing to report.
var errClientGone = errors.New("session: client connection lost")

// dbctx bounds one storage call.
func (s *Session) dbctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.b.cfg.DBTimeout)
}

// Close ends the session: stops its watches and cancels its storage calls.
func (s *Session) Close() error {
	s.cancel() // ends a running Idle
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if s.sel != nil {
		s.sel.stop()
		s.sel = nil
	}
	s.b.cfg.Metrics.SessionsActive.Dec()
	return nil
}

// plaintextAllowed reports whether this connection may log in: over TLS,
// from loopback (PlaintextFrom), or with AllowPlaintext (SPEC §8). The daemon also serves
// other clients with go-imap's InsecureAuth off, so they see
// LOGINDISABLED; this check is the second line.
func (s *Session) plaintextAllowed() bool {
	nc := s.conn.NetConn()
	if _, ok := nc.(*tls.Conn); ok || s.b.cfg.AllowPlaintext {
		return true
	}
	return s.b.cfg.PlaintextFrom(nc.RemoteAddr())
}

// writeHolder is a connection that can keep writes until released (the
// daemon's byte-counting connection).
type writeHolder interface {
	Hold() (release func() error)
}

// holdWrites makes the writes to the client wait until release, below
// TLS if there is TLS. Without a holder it does nothing.
func (s *Session) holdWrites() (release func() error) {
	nc := s.conn.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if h, ok := nc.(writeHolder); ok {
		return h.Hold()
	}
	return func() error { return nil }
}

// loginNoter is a connection that wants to know of a login (the daemon's
// connection: it bounds the silence of clients that have not logged in).
type loginNoter interface {
	LoggedIn()
}

// notedLogin tells the connection below TLS, if it asks, that the session
// has logged in.
func (s *Session) notedLogin() {
	nc := s.conn.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if n, ok := nc.(loginNoter); ok {
		n.LoggedIn()
	}
}

// IsLoopback reports whether a is a loopback IP address.
func IsLoopback(a net.Addr) bool { return connlimit.IP(a).IsLoopback() }

// Login is LOGIN and AUTHENTICATE PLAIN.
func (s *Session) Login(username, password string) (err error) {
	defer s.track("login", &err)()
	m := s.b.cfg.Metrics
	if !s.plaintextAllowed() {
		m.Logins.WithLabelValues("refused").Inc()
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodePrivacyRequired, Text: "TLS is required to log in"}
	}
	start := time.Now()
	ip := connlimit.IP(s.conn.NetConn().RemoteAddr())
	if lim := s.b.cfg.AuthLimit; lim != nil && lim.Blocked(ip, start) {
		m.Logins.WithLabelValues("refused").Inc()
		s.log.Warn("login refused: too many failures from this address")
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "too many failed logins from your address; try later"}
	}
	ctx, cancel := s.dbctx()
	defer cancel()
	acct, err := s.b.cfg.Store.Login(ctx, username, password)
	if errors.Is(err, mailbox.ErrAuth) {
		m.Logins.WithLabelValues("failed").Inc()
		s.log.Info("login failed")
		if lim := s.b.cfg.AuthLimit; lim != nil {
			lim.Fail(ip, start)
		}
		if wait := s.b.cfg.AuthFailDelay - time.Since(start); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		return imapserver.ErrAuthFailed
	}
	if err != nil {
		m.Logins.WithLabelValues("error").Inc()
		return fmt.Errorf("login: %w", err)
	}
	m.Logins.WithLabelValues("ok").Inc()
	if acct.Cached {
		m.LoginsCached.Inc()
	}
	s.notedLogin()
	s.acct = acct
	s.log = s.log.With("login", acct.Login)
	s.log.Info("logged in", "mailboxes", len(acct.Mailboxes))
	return nil
}
