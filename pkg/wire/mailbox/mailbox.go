package mailbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// DB is what Store needs of a dbd client; *client.Client implements it.
type DB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	FindMeta(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	MailRows(ctx context.Context, receive model.Key) ([]wire.Row, error)
	MailsRows(ctx context.Context, receives []model.Key, budget uint64) (map[model.Key][]wire.Row, error)
	List(ctx context.Context, t model.Table, parent model.Key, after uint64, limit int) ([]wire.Row, error)
	Watch(ctx context.Context, t model.Table, keys []model.Key, initial bool) (*client.Stream, error)
	WatchChildren(ctx context.Context, t model.Table, parent model.Key) (*client.Stream, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var _ DB = (*client.Client)(nil)

// ErrAuth is returned by Login for an unknown login, a wrong password or an
// account without a password: callers must not tell these apart to the
// client.
var ErrAuth = errors.New("mailbox: authentication failed")

// Store reads and changes mailboxes through one dbd.
type Store struct {
	db     DB
	checks chan struct{} // a slot per password check running
	logins *loginCache   // nil: every login is checked
	// check is passwd.Check; tests count the checks through it.
	check func(password, hash string) (bool, error)

	dummyOnce sync.Once
	dummy     string // a hash checked for unknown logins (see burn)

	// spare holds mail buffers given back with Recycle for FetchMany's
	// joins (as pointers: a slice put in a Pool would be an allocation).
	spare sync.Pool
}

// DefaultMaxChecks bounds the logins one Store checks at once. An argon2id
// check holds its memory cost (64 MiB with passwd.Default) while it runs,
// so a flood of logins must queue, not allocate: 4 checks are 256 MiB.
const DefaultMaxChecks = 4

// Options configure a Store; a zero field means its default.
type Options struct {
	// MaxChecks bounds the password checks running at once. Default
	// DefaultMaxChecks.
	MaxChecks int
	// LoginCacheTTL is how long a password argon2id confirmed is taken
	// again without a check (see loginCache); negative: never. Default
	// DefaultLoginCacheTTL.
	LoginCacheTTL time.Duration
	// LoginCacheSize bounds the logins remembered. Default
	// DefaultLoginCacheSize.
	LoginCacheSize int
}

// New returns a Store over db with the default Options.
func New(db DB) *Store { return NewWith(db, Options{}) }

// NewWith returns a Store over db configured by o.
func NewWith(db DB, o Options) *Store {
	ttl := o.LoginCacheTTL
	if ttl == 0 {
		ttl = DefaultLoginCacheTTL
	}
	return &Store{db: db, checks: make(chan struct{}, cmp.Or(max(o.MaxChecks, 0), DefaultMaxChecks)),
		logins: newLoginCache(ttl, cmp.Or(o.LoginCacheSize, DefaultLoginCacheSize), time.Now), check: passwd.Check}
}

// Account is a logged-in user.
type Account struct {
	Login     string
	Key       model.Key // the pop3 row
	Mailboxes []Box     // in a stable order; the first is the primary one
	// Cached is set when the login cache took the password without an
	// argon2id check (the servers count these).
	Cached bool
}

// Box is one mailbox of an account.
type Box struct {
	Key     model.Key
	Address string
	// Drop lists the header field names (lower case) removed from every
	// mail of this mailbox on retrieval (see HeaderFilterColumn).
	Drop []string
}

// Login checks login and password. Any failure to authenticate is ErrAuth;
// other errors mean dbd could not be asked (a temporary failure) or ctx
// ended while the login waited for a check slot (see NewLimited).
func (s *Store) Login(ctx context.Context, login, password string) (*Account, error) {
	select {
	case s.checks <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a password check slot: %w", ctx.Err())
	}
	defer func() { <-s.checks }()
	if model.CheckLogin(login) != nil {
		s.burn(password)
		return nil, ErrAuth
	}
	content := model.AccountContent(login)
	acct, err := s.db.FindKey(ctx, model.POP3, model.KeyOf(model.POP3, content))
	if errors.Is(err, client.ErrNotFound) {
		s.burn(password)
		return nil, ErrAuth
	}
	if err != nil {
		return nil, fmt.Errorf("find account: %w", err)
	}
	pk, ok := model.CurrentPassword(acct.State)
	if !ok {
		s.burn(password)
		return nil, ErrAuth
	}
	pw, err := s.db.FindKey(ctx, model.Text, pk)
	if errors.Is(err, client.ErrNotFound) {
		return nil, ErrAuth // not replicated here yet
	}
	if err != nil {
		return nil, fmt.Errorf("find password: %w", err)
	}
	_, hash, err := model.ParsePasswordContent(pw.Content)
	if err != nil {
		return nil, ErrAuth
	}
	cached := s.logins.ok(acct.Key, hash, password)
	if !cached {
		if ok, err := s.check(password, hash); err != nil || !ok {
			return nil, ErrAuth
		}
		s.logins.add(acct.Key, hash, password)
	}
	a := &Account{Login: strings.ToLower(login), Key: acct.Key, Cached: cached}
	for _, mk := range model.AccountMailboxes(acct.State) {
		b, err := s.box(ctx, mk)
		if errors.Is(err, client.ErrNotFound) {
			continue // linked but not replicated here yet
		}
		if err != nil {
			return nil, err
		}
		a.Mailboxes = append(a.Mailboxes, b)
	}
	return a, nil
}

// burn spends the time of one password check, so an unknown login takes
// as long to refuse as a wrong password (no timing oracle for which logins
// exist).
func (s *Store) burn(password string) {
	s.dummyOnce.Do(func() { s.dummy, _ = passwd.Hash("twinmx-no-such-account", passwd.Default) })
	passwd.Check(password, s.dummy)
}

func (s *Store) box(ctx context.Context, k model.Key) (Box, error) {
	row, err := s.db.FindKey(ctx, model.Mailbox, k)
	if err != nil {
		return Box{}, fmt.Errorf("find mailbox %s: %w", k, err)
	}
	return Box{Key: k, Address: string(row.Content), Drop: model.HeaderFilters(row.State)}, nil
}

// Message is one mail in a mailbox.
type Message struct {
	Receive model.Key   // the receive row: the same key on every site
	Mail    model.Key   // the mail row
	Mailbox model.Key   // the mailbox row
	RowNo   uint64      // the receive row's local number: arrival order at this site
	State   model.State // the receive row's columns (flags, deleted ...)
	// Appended marks a receive row stored by IMAP APPEND (its "mailbox"
	// is an IMAP folder key, see Appended): it is not acknowledged by
	// smtpd, and its Received fields are linked by
	// model.AppendedReceived rather than smtpd's received link.
	Appended bool
}

// Acknowledged reports whether the row is a mail in the mailbox: acknowledged
// and not deleted.
func Acknowledged(st model.State) bool {
	return st.Col(model.ColAcknowledged) == model.FlagSet && st.Col(model.ColDeleted) == 0
}

// pageSize is the rows asked for per list request (dbd sends at most 10000).
const pageSize = 5000

// Messages returns the mail of mailbox with a row number above after, in
// arrival order at this site: acknowledged, not deleted receive rows.
func (s *Store) Messages(ctx context.Context, mailbox model.Key, after uint64) ([]Message, error) {
	ms, _, err := s.Rows(ctx, mailbox, after, false)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if m.Visible() {
			out = append(out, m)
		}
	}
	return out, nil
}

// Rows returns every receive row under parent (an SMTP mailbox, or with
// appended an IMAP folder key: mail APPENDed through IMAP, whose rows never
// share a parent with an SMTP mailbox, since a folder key is a text row
// key) with a row number above after, in arrival order, visible or not: a caller that keeps them can follow a row that
// becomes visible later (acknowledged) from a watch event, which carries no
// content. last is the highest row number listed (after if none), rows
// that do not belong to parent included.
func (s *Store) Rows(ctx context.Context, parent model.Key, after uint64, appended bool) (ms []Message, last uint64, err error) {
	for {
		rows, err := s.db.List(ctx, model.Receive, parent, after, pageSize)
		if err != nil {
			return nil, 0, err
		}
		if ms == nil {
			ms = make([]Message, 0, len(rows))
		}
		for i := range rows {
			r := &rows[i]
			after = r.RowNo
			mail, box, err := model.ParseReceiveContent(r.Content)
			if err != nil || box != parent {
				continue
			}
			ms = append(ms, Message{Receive: r.Key, Mail: mail, Mailbox: box, RowNo: r.RowNo, State: r.State, Appended: appended})
		}
		if len(rows) < pageSize {
			return ms, after, nil
		}
	}
}

// Visible reports whether m is mail in its mailbox or folder: an SMTP
// delivery acknowledged and not deleted, an APPENDed mail not deleted (it
// needs no ack: the mailbox role that writes it cannot make an SMTP
// delivery visible, docs/imapd.md §4).
func (m *Message) Visible() bool {
	if m.Appended {
		return m.State.Col(model.ColDeleted) == 0
	}
	return Acknowledged(m.State)
}

// Fetch returns the mail of m exactly as it was received (header with its
// Received fields, then the body), with the mailbox's dropped header
// fields removed (drop: lower-case names, see Box.Drop). It is one round
// trip: dbd sends the rows that make the mail in one answer (op mail).
func (s *Store) Fetch(ctx context.Context, m Message, drop []string) ([]byte, error) {
	raw, _, err := s.FetchOrigin(ctx, m, drop)
	return raw, err
}

// Origin names the rows a mail's bytes were joined from: the mail row
// (which names the header and body rows) and the received row whose
// Received fields were put back (zero: none was there). Every one of
// these rows is keyed by a hash of its content, so two reads with equal
// origins and equal dropped fields return equal bytes: a reader may
// cache what it derives from the bytes under the origin. The receive
// row's link to its received row can change (an earlier acknowledgement
// replicating from the other site), which is why the received row is
// part of the origin and not implied by the receive row.
type Origin struct {
	Mail     model.Key
	Received model.Key
}

// FetchOrigin is Fetch that also returns the rows the bytes were joined
// from.
func (s *Store) FetchOrigin(ctx context.Context, m Message, drop []string) ([]byte, Origin, error) {
	rows, err := s.db.MailRows(ctx, m.Receive)
	if err != nil {
		return nil, Origin{}, fmt.Errorf("read mail %s: %w", m.Mail, err)
	}
	p, whole, o := rowParts(m, rows)
	raw, err := joinParts(m, p, whole, drop, nil)
	return raw, o, err
}

// Head is what a mail's listing needs of it without its body: its header
// and its length, exactly as of the bytes Fetch returns.
type Head struct {
	// Header is what Fetch returns before the body: the header section
	// with its Received fields and without the dropped fields, blank line
	// included when the mail has one.
	Header []byte
	// Size is the length of what Fetch returns: len(Header) and the
	// body's.
	Size int64
}

// FetchHeadOrigin is FetchOrigin for the mail's head only. It reads the
// body row too (op mail has no flag to leave it out); the read-ahead of
// heads (ReadAheadHeads) does not.
func (s *Store) FetchHeadOrigin(ctx context.Context, m Message, drop []string) (Head, Origin, error) {
	rows, err := s.db.MailRows(ctx, m.Receive)
	if err != nil {
		return Head{}, Origin{}, fmt.Errorf("read mail %s: %w", m.Mail, err)
	}
	p, whole, o := rowParts(m, rows)
	h, err := joinHead(m, p, whole, bodySize(rows), drop, nil)
	return h, o, err
}

// FetchMany is Fetch for several mails: raws[i] and errs[i] are msgs[i]'s,
// read from one dbd snapshot per wire.MaxMailsKeys mails, in one request
// each. A dbd from before the mails operation gets one request per mail.
func (s *Store) FetchMany(ctx context.Context, msgs []Message, drops [][]string) (raws [][]byte, errs []error) {
	raws, errs = make([][]byte, len(msgs)), make([]error, len(msgs))
	for start := 0; start < len(msgs); start += wire.MaxMailsKeys {
		part := msgs[start:min(start+wire.MaxMailsKeys, len(msgs))]
		keys := make([]model.Key, len(part))
		for i := range part {
			keys[i] = part[i].Receive
		}
		byKey, release, err := s.mailsRows(ctx, keys)
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeBadRequest {
			release()
			for i := range part {
				raws[start+i], errs[start+i] = s.Fetch(ctx, part[i], drops[start+i])
			}
			continue
		}
		for i := range part {
			switch rows, ok := byKey[part[i].Receive]; {
			case err != nil:
				errs[start+i] = fmt.Errorf("read mail %s: %w", part[i].Mail, err)
			case !ok:
				errs[start+i] = fmt.Errorf("read mail %s: %w", part[i].Mail, client.ErrNotFound)
			default:
				raws[start+i], errs[start+i] = joinRows(part[i], rows, drops[start+i], s.spareBuf())
			}
		}
		release() // the joined mails are copies
	}
	return raws, errs
}

// Recycle gives back the bytes of a mail Fetch or FetchMany returned, once
// the caller no longer uses them nor anything sliced from them: a later
// FetchMany joins a mail into that memory instead of new memory. pop3d
// gives back each mail it sent: some 6 kB of garbage a corpus mail, and
// the collections it caused, were a fifth of its CPU in a RETR of the
// corpus. Optional; buffers over recycleMax are left to the collector.
func (s *Store) Recycle(raw []byte) {
	if raw == nil || cap(raw) > recycleMax {
		return
	}
	b := raw[:0]
	s.spare.Put(&b)
}

// spareBuf returns a buffer given back with Recycle, or nil.
func (s *Store) spareBuf() []byte {
	if b, ok := s.spare.Get().(*[]byte); ok {
		return *b
	}
	return nil
}

// mailsRows reads the rows of op mails for keys, in the client's pooled
// memory when the DB offers it (the rows are joined into a mail of their
// own right after): without it, the client copied every content out of
// the answer first. release gives that memory back; it is never nil.
func (s *Store) mailsRows(ctx context.Context, keys []model.Key) (map[model.Key][]wire.Row, func(), error) {
	if p, ok := s.db.(pooledDB); ok {
		return p.MailsRowsPooled(ctx, keys, 0)
	}
	byKey, err := s.db.MailsRows(ctx, keys, 0)
	return byKey, func() {}, err
}

// joinRows makes m's bytes from the rows of op mail, without the header
// fields drop names, in buf's memory if it is large enough (nil: new
// memory).
func joinRows(m Message, rows []wire.Row, drop []string, buf []byte) ([]byte, error) {
	p, whole, _ := rowParts(m, rows)
	return joinParts(m, p, whole, drop, buf)
}

// joinParts makes m's bytes from its parts (whole: the header and body
// were there), without the header fields drop names, in buf's memory if
// it is large enough (nil: new memory).
func joinParts(m Message, p model.Parts, whole bool, drop []string, buf []byte) ([]byte, error) {
	if !whole {
		return nil, fmt.Errorf("read mail %s: header or body not on this site yet: %w", m.Mail, client.ErrNotFound)
	}
	if cap(buf) < model.JoinedSizeMax(p) {
		buf = make([]byte, 0, model.JoinedSizeMax(p))
	}
	raw, err := model.AppendJoin(buf[:0], p)
	if err != nil {
		// A received row that does not fit its header (it cannot happen
		// for rows smtpd wrote): the mail without trace fields is better
		// than no mail.
		p.Received = nil
		if raw, err = model.AppendJoin(buf[:0], p); err != nil {
			return nil, fmt.Errorf("join mail %s: %w", m.Mail, err)
		}
	}
	return DropFields(raw, drop), nil
}

// joinHead makes m's head from its parts, whose body, of bodyLen bytes,
// need not be there (wire.MailsNoBody), in buf's memory if it is large
// enough: what joinParts would make, cut before the body. The join fails
// (and falls back to the mail without trace fields) for a Received field
// without line end that is not last, and whether it is last depends on
// whether a body follows: a byte stands in for the body in the join and is
// cut off after. DropFields ends at the header section's end, so dropping
// fields from the head is dropping them from the mail.
func joinHead(m Message, p model.Parts, whole bool, bodyLen int64, drop []string, buf []byte) (Head, error) {
	if !whole {
		return Head{}, fmt.Errorf("read mail %s: header or body not on this site yet: %w", m.Mail, client.ErrNotFound)
	}
	p.Body = nil
	if bodyLen > 0 {
		p.Body = []byte{0}
	}
	if cap(buf) < model.JoinedSizeMax(p) {
		buf = make([]byte, 0, model.JoinedSizeMax(p))
	}
	raw, err := model.AppendJoin(buf[:0], p)
	if err != nil {
		p.Received = nil // as joinParts does
		if raw, err = model.AppendJoin(buf[:0], p); err != nil {
			return Head{}, fmt.Errorf("join mail %s: %w", m.Mail, err)
		}
	}
	h := DropFields(raw[:len(raw)-len(p.Body)], drop)
	return Head{Header: h, Size: int64(len(h)) + bodyLen}, nil
}

// bodySize is the length of the body among the rows of op mail: its
// content's, or without it (wire.MailsNoBody) the size sent; 0 without a
// body row.
func bodySize(rows []wire.Row) int64 {
	for i := range rows {
		if r := &rows[i]; r.Table == model.Body {
			if r.HasContent || len(r.Content) > 0 {
				return int64(len(r.Content))
			}
			return int64(r.Size)
		}
	}
	return 0
}

// rowParts picks m's parts from the rows of op mail; whole is false
// when its header or body row is missing. o names the rows picked.
func rowParts(m Message, rows []wire.Row) (p model.Parts, whole bool, o Origin) {
	var header, body bool
	o.Mail = m.Mail // fixed by the receive row's content
	for i := range rows {
		switch r := &rows[i]; r.Table {
		case model.Mail:
			o.Mail = r.Key
		case model.Header:
			p.Header, header = r.Content, true
		case model.Body:
			p.Body, body = r.Content, true
		case model.Received:
			p.Received, o.Received = r.Content, r.Key
		}
	}
	return p, header && body, o
}

// sizePrefix starts the receive column that caches a mail's size (see
// RememberSizes): the prefix and the key of the received row the size was
// computed with, since the acknowledged delivery's received row — and so
// the size — can change when the other site's earlier acknowledgement
// replicates.
const sizePrefix = "pop3.sz."

func sizeColumn(st model.State) string {
	rk, _ := model.MailReceived(st) // the zero key: no received row
	return model.LinkColumn(sizePrefix, rk)
}

// Size returns the length of what Fetch(ctx, m, drop) returns, without
// reading the body: a mailbox listing (POP3 LIST, IMAP RFC822.SIZE) costs
// small reads only, and none once RememberSizes cached the size in the
// receive row (for mail without a header filter).
func (s *Store) Size(ctx context.Context, m Message, drop []string) (int64, error) {
	if len(drop) == 0 {
		if v := m.State.Col(sizeColumn(m.State)); v > 0 {
			return int64(v), nil
		}
	}
	mail, err := s.db.FindKey(ctx, model.Mail, m.Mail)
	if err != nil {
		return 0, fmt.Errorf("find mail %s: %w", m.Mail, err)
	}
	hk, bk, err := model.ParseMailContent(mail.Content)
	if err != nil {
		return 0, fmt.Errorf("mail %s: %w", m.Mail, err)
	}
	h, err := s.db.FindKey(ctx, model.Header, hk)
	if err != nil {
		return 0, fmt.Errorf("find header of %s: %w", m.Mail, err)
	}
	b, err := s.db.FindMeta(ctx, model.Body, bk)
	if err != nil {
		return 0, fmt.Errorf("find body of %s: %w", m.Mail, err)
	}
	p := model.Parts{Header: h.Content}
	if rk, ok := model.MailReceived(m.State); ok {
		r, err := s.db.FindKey(ctx, model.Received, rk)
		switch {
		case err == nil:
			p.Received = r.Content
		case !errors.Is(err, client.ErrNotFound):
			return 0, fmt.Errorf("find received of %s: %w", m.Mail, err)
		}
	}
	// The head as Fetch makes it (its fallback for trace fields that do not
	// join included, and the header filter), so the two cannot disagree.
	head, err := joinHead(m, p, true, int64(b.Size), drop, nil)
	if err != nil {
		return 0, err
	}
	return head.Size, nil
}

// RememberSizes caches sizes[i], computed by Size without a header filter,
// in msgs[i]'s receive row (a pop3.* column the mailbox role may set), so
// the next listing on this site — and on the other, after replication —
// reads no rows to know it. Sizes already cached are skipped.
func (s *Store) RememberSizes(ctx context.Context, msgs []Message, sizes []int64) error {
	var reqs []wire.Request
	for i, m := range msgs {
		col := sizeColumn(m.State)
		if i >= len(sizes) || sizes[i] <= 0 || m.State.Col(col) > 0 {
			continue
		}
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: m.Receive},
			Name: col, Value: uint64(sizes[i])})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), wire.MaxBatchOps)
		if _, err := s.db.Batch(ctx, reqs[:n]); err != nil {
			return fmt.Errorf("remember %d sizes: %w", n, err)
		}
		reqs = reqs[n:]
	}
	return nil
}

// Delete marks the receive rows deleted, in one atomic batch. Deleted
// outranks present, so the deletion replicates and is never undone.
func (s *Store) Delete(ctx context.Context, keys []model.Key) error {
	if len(keys) == 0 {
		return nil
	}
	reqs := make([]wire.Request, 0, len(keys))
	for _, k := range keys {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k},
			Name: model.ColDeleted, Value: model.FlagSet})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), wire.MaxBatchOps)
		if _, err := s.db.Batch(ctx, reqs[:n]); err != nil {
			return fmt.Errorf("mark %d mails deleted: %w", n, err)
		}
		reqs = reqs[n:]
	}
	return nil
}

// Watch subscribes to changes of the mailbox's receive rows (new mail,
// acknowledgements, flags, deletions), as events without content. Read
// Messages after it returns to miss nothing.
func (s *Store) Watch(ctx context.Context, mailbox model.Key) (*client.Stream, error) {
	st, err := s.db.WatchChildren(ctx, model.Receive, mailbox)
	if err != nil {
		return nil, fmt.Errorf("watch mailbox %s: %w", mailbox, err)
	}
	return st, nil
}
