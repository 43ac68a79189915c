// Package session is smtpd's go-smtp backend: one Session per SMTP
// connection. It checks recipients against the mailbox table, reads the
// message within a memory budget, hands it to package deliver, and turns the
// outcome into the reply (SPEC §1, §5). Stream-level defences (line and data
// framing, timeouts, early talkers, STARTTLS) live in package guard, below
// go-smtp; this package asks the connection for what guard found.
package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/deliver"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
	"github.com/twinmx/twinmx/services/smtpd/internal/replay"
)

// DB is what a session needs of dbd (*client.Client implements it).
type DB interface {
	deliver.DB
	Find(ctx context.Context, t model.Table, content []byte) (*wire.Row, error)
	Set(ctx context.Context, t model.Table, ref wire.Ref, col string, v uint64) (uint64, error)
	FindOrInsert(ctx context.Context, t model.Table, content []byte) (uint64, bool, error)
}

// ConnFacts is what the connection below go-smtp (package guard) knows and
// the session needs. A connection that does not implement it (unit tests
// with a plain net.Conn) is taken as clean, without TLS and capture.
type ConnFacts interface {
	// DataViolation describes the first framing violation (bare CR, bare
	// LF, NUL) in the current DATA, or "" if it was clean.
	DataViolation() string
	// TLS reports the TLS state once STARTTLS completed.
	TLS() (tls.ConnectionState, bool)
	// Extended reports whether the last greeting accepted was EHLO, not
	// HELO (the trace field's "with ESMTP" or "with SMTP").
	Extended() bool
	// ID numbers the connection within this smtpd process.
	ID() uint64
	// DataStored tells the connection that the last DATA's message is
	// stored and can be found by ref; its capture then keeps ref instead
	// of the bytes (see replay.DataRef).
	DataStored(ref string)
	// Message reads the current DATA's message, in place of go-smtp's
	// reader (see guard.Conn.Message); called first in Data.
	Message() io.Reader
}

// ID names a connection in throw-in and capture rows: the process's random
// prefix and the connection's number, so the rows of one session can be
// found together.
func ID(prefix string, conn uint64) string { return fmt.Sprintf("%s-%d", prefix, conn) }

// Config configures the backend. Zero fields take the defaults noted.
type Config struct {
	Hostname string           // our name in replies and the trace field
	IDPrefix string           // random per process; see ID
	Watcher  *deliver.Watcher // the shared receive-table watch; required
	// MailboxTTL is how long a mailbox lookup is remembered (0: not at
	// all). A new, removed or re-policied mailbox is seen within it.
	MailboxTTL time.Duration
	Decision   deliver.Policy   // decision window and copies
	MaxSize    int64            // message size limit in bytes (also go-smtp's MaxMessageBytes)
	Budget     *Budget          // memory for message data of all sessions; nil = unbounded
	DBTimeout  time.Duration    // bound on one dbd request; default 10 s
	Logger     *slog.Logger     // default slog.Default()
	Metrics    *metrics.Metrics // required
	Now        func() time.Time // default time.Now
	// MaxHeaderSize bounds the header section in bytes (552 5.3.4 above
	// it). Default DefaultMaxHeaderSize; negative: no limit.
	MaxHeaderSize int
	// MaxHops bounds the Received fields a mail may arrive with (554
	// 5.4.6 above it: a mail loop). Default DefaultMaxHops; negative: no
	// limit.
	MaxHops int
	// NoSpaceHold is how long after dbd last answered that its disk is
	// full MAIL gets 452 4.3.1 without asking dbd (see fullMark).
	// Default DefaultNoSpaceHold; negative: MAIL is never refused for it
	// (the mail still gets 452 4.3.1 after DATA).
	NoSpaceHold time.Duration
	// NoReturnPath leaves out the Return-Path field smtpd adds at final
	// delivery (RFC 5321 §4.4). Only for a site whose peer still runs
	// readers older than 2026-12-03, which take a received row holding
	// one for malformed and serve the mail without its trace fields.
	NoReturnPath bool
	// Record, if set, takes best-effort bookkeeping writes (the decision
	// time on a throw-in row) to send off the reply's path, batched with
	// other records (the daemon's capture writer); nil: each is a dbd
	// request of its own.
	Record func(reqs []wire.Request)
}

// Backend makes sessions; it implements smtp.Backend.
type Backend struct {
	cfg       Config
	db        DB
	base      context.Context
	mailboxes *mailboxes
	full      fullMark // dbd recently said its disk is full
	// armer, if the client has it, takes armed acknowledgements
	// (deliver.Arm); noArm is set once dbd refused one (a dbd older
	// than the arm operation), and acknowledgements are sent after the
	// decision again.
	armer deliver.Armer
	noArm atomic.Bool
	// bufs holds *[]byte message buffers of dataBufSize, reused so that
	// each mail does not allocate and zero a fresh one (under load that
	// was a third of smtpd's allocation, paid again in GC work).
	bufs sync.Pool
}

// Defaults of the header limits.
const (
	// DefaultMaxHeaderSize is 1 MiB: far above real mail (a few KiB; a
	// list mail with a thousand addressees in To is some 50 KiB) and a
	// bound on what spamd, imapd's ENVELOPE and every reader parse.
	// Postfix keeps 100 KiB of a header and cuts the rest; twinmx stores
	// mail byte for byte, so it refuses instead.
	DefaultMaxHeaderSize = 1 << 20
	// DefaultMaxHops is RFC 5321 §6.3's suggestion of 100 Received fields.
	DefaultMaxHops = 100
)

// dataBufSize is readData's first buffer for a mail of unknown size.
const dataBufSize = 64 << 10

// NewBackend returns a backend whose sessions end their dbd requests when
// ctx is done.
func NewBackend(ctx context.Context, cfg Config, db DB) *Backend {
	if cfg.DBTimeout == 0 {
		cfg.DBTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxHeaderSize == 0 {
		cfg.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if cfg.MaxHops == 0 {
		cfg.MaxHops = DefaultMaxHops
	}
	if cfg.NoSpaceHold == 0 {
		cfg.NoSpaceHold = DefaultNoSpaceHold
	}
	b := &Backend{cfg: cfg, db: db, base: ctx, mailboxes: newMailboxes(db, cfg.MailboxTTL, 10000, cfg.Now, cfg.DBTimeout),
		full: fullMark{hold: cfg.NoSpaceHold}}
	b.armer, _ = db.(deliver.Armer)
	return b
}

// NewSession implements smtp.Backend. go-smtp calls it at the first
// HELO/EHLO.
func (b *Backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ctx, cancel := context.WithCancel(b.base)
	s := &Session{b: b, ctx: ctx, cancel: cancel, conn: c, start: b.cfg.Now()}
	if f, ok := c.Conn().(ConnFacts); ok {
		s.facts = f
		s.id = ID(b.cfg.IDPrefix, f.ID())
	} else {
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			cancel()
			return nil, fmt.Errorf("session id: %w", err)
		}
		s.id = hex.EncodeToString(id[:])
	}
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		s.client = a.String()
	}
	b.cfg.Metrics.Sessions.Inc()
	b.cfg.Metrics.SessionsActive.Inc()
	if b.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		s.logger().Debug("session start", "helo", c.Hostname())
	}
	return s, nil
}

// logger is the session's logger, with its id and client, made on first
// use: With formats its attributes at once, and most sessions log only
// their decisions, which name them themselves (see decide). recordReply
// may call it from another goroutine.
func (s *Session) logger() *slog.Logger {
	if l := s.log.Load(); l != nil {
		return l
	}
	l := s.b.cfg.Logger.With("session", s.id, "client", s.client)
	if !s.log.CompareAndSwap(nil, l) {
		return s.log.Load()
	}
	return l
}

// Session is one SMTP connection's state. go-smtp calls its methods from the
// connection's goroutine only.
type Session struct {
	b      *Backend
	ctx    context.Context
	cancel context.CancelFunc
	id     string
	conn   *smtp.Conn
	facts  ConnFacts
	client string
	start  time.Time
	log    atomic.Pointer[slog.Logger] // see logger

	attempts int // transactions that reached DATA
	txn      *txn
}

// txn is one mail transaction (MAIL to the end of DATA or RSET).
type txn struct {
	from      string
	size      int64 // the SIZE parameter, 0 if absent
	rcpts     []string
	mailboxes []model.Key
	policy    model.Policy
	refused   []string // "address code" of refused recipients, for the throw-in
	utf8      bool     // MAIL had SMTPUTF8: non-ASCII addresses allowed
	// withMail: the throw-in went to dbd in the mail's store batch, so
	// finishTxn writes none. Set at the store, not at DATA: a message
	// refused before it is stored (smuggling, size, header limits) still
	// needs its throw-in (docs/smtpd.md §4), and finishTxn writes it.
	withMail bool
}

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

var (
	errTempStore = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure storing the message, try again later")
	errTempDB    = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure looking up the recipient, try again later")
)

// Mail implements smtp.Session.
func (s *Session) Mail(from string, opts *smtp.MailOptions) error {
	if s.txn != nil {
		// RFC 5321 §4.1.4: a transaction ends with DATA or RSET (go-smtp
		// resets the session then); go-smtp would let MAIL start over.
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Nested MAIL command")
	}
	utf8 := opts != nil && opts.UTF8
	if err := checkAddress(from, utf8, smtp.EnhancedCode{5, 1, 7}); err != nil {
		s.b.cfg.Metrics.Rejections.WithLabelValues("address").Inc()
		return err
	}
	if len(from) > maxSender {
		s.b.cfg.Metrics.Rejections.WithLabelValues("address").Inc()
		return smtpErr(501, smtp.EnhancedCode{5, 1, 7}, "Path too long")
	}
	if s.b.full.full(s.b.cfg.Now()) {
		// RFC 5321 §4.3.2 allows 452 for MAIL; Postfix says it there when
		// its queue file system is full, before the sender sends data.
		s.b.cfg.Metrics.Rejections.WithLabelValues("no-space").Inc()
		return errNoSpace
	}
	s.txn = &txn{from: from, utf8: utf8}
	if opts != nil {
		s.txn.size = opts.Size
	}
	return nil
}

// checkAddress refuses an envelope address with a control byte (501; the
// guard already ends a session that sends one), a non-ASCII address in a
// transaction without SMTPUTF8 (553 5.6.7, RFC 6531 §3.6) and one that is
// not valid UTF-8 (501). enh is the enhanced code for a bad address:
// 5.1.7 for the sender, 5.1.3 for a recipient.
func checkAddress(addr string, utf8OK bool, enh smtp.EnhancedCode) *smtp.SMTPError {
	ascii := true
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c < 0x20 || c == 0x7f:
			return smtpErr(501, enh, "Bad address syntax: control character")
		case c >= 0x80:
			ascii = false
		}
	}
	switch {
	case ascii:
		return nil
	case !utf8OK:
		return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address needs SMTPUTF8")
	case !utf8.ValidString(addr):
		return smtpErr(501, enh, "Bad address syntax: not valid UTF-8")
	}
	return nil
}

// Rcpt implements smtp.Session: the mailbox must exist, and its spam policy
// must match the transaction's first recipient's.
func (s *Session) Rcpt(to string, _ *smtp.RcptOptions) error {
	t := s.txn
	if t == nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "MAIL first")
	}
	if err := checkAddress(to, t.utf8, smtp.EnhancedCode{5, 1, 3}); err != nil {
		s.b.cfg.Metrics.Rejections.WithLabelValues("address").Inc()
		t.refused = append(t.refused, fmt.Sprintf("%s %d", to, err.Code))
		return err
	}
	// A domain written as an absolute DNS name (bob@example.org.) is the
	// same domain; Postfix reads it so too.
	if at := strings.LastIndexByte(to, '@'); at > 0 && strings.HasSuffix(to, ".") && !strings.HasSuffix(to, "..") {
		to = to[:len(to)-1]
	}
	content := model.MailboxContent(to)
	exists, policy, err := s.b.mailboxes.lookup(s.ctx, content)
	if lower := lowerIfUnknown(content, exists, err); lower != nil {
		// Senders write John.Doe@ for john.doe@, and a 550 bounces the
		// mail for good. RFC 5321 §2.4 lets a server read local parts
		// case-sensitively but tells it not to depend on that: a local
		// part with capitals that names no mailbox reaches the mailbox of
		// its lower-case spelling, if there is one. (A mailbox made with
		// capitals is still reached by exactly its spelling.)
		if exists, policy, err = s.b.mailboxes.lookup(s.ctx, lower); exists {
			content = lower
		}
	}
	switch {
	case err != nil:
		s.b.cfg.Metrics.DBErrors.WithLabelValues("find-mailbox").Inc()
		s.logger().Warn("mailbox lookup failed", "rcpt", to, "err", err)
		reply := s.dbReply(err, errTempDB)
		t.refused = append(t.refused, fmt.Sprintf("%s %d", to, reply.Code))
		return reply
	case !exists:
		s.b.cfg.Metrics.Rejections.WithLabelValues("unknown-mailbox").Inc()
		t.refused = append(t.refused, to+" 550")
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, fmt.Sprintf("<%s>: Recipient address rejected: no such mailbox here", to))
	}
	key := model.KeyOf(model.Mailbox, content)
	for _, k := range t.mailboxes {
		if k == key {
			return nil // the same mailbox twice gets one receive row
		}
	}
	if len(t.mailboxes) > 0 && policy != t.policy {
		s.b.cfg.Metrics.Rejections.WithLabelValues("policy-mix").Inc()
		t.refused = append(t.refused, to+" 452")
		return smtpErr(452, smtp.EnhancedCode{4, 5, 3}, "Recipients with another spam policy: send this one in a separate transaction")
	}
	t.policy = policy
	t.rcpts = append(t.rcpts, to)
	t.mailboxes = append(t.mailboxes, key)
	return nil
}

// lowerIfUnknown returns the lower-case spelling of the content of a
// mailbox that was looked up without error and does not exist, if it
// differs; else nil. A found mailbox costs no copy.
func lowerIfUnknown(content []byte, exists bool, err error) []byte {
	if err != nil || exists {
		return nil
	}
	if lower := bytes.ToLower(content); !bytes.Equal(lower, content) {
		return lower
	}
	return nil
}

// Data implements smtp.Session: read, store, wait, answer.
func (s *Session) Data(r io.Reader) error {
	t := s.txn
	if t == nil || len(t.mailboxes) == 0 {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}
	s.attempts++
	m := s.b.cfg.Metrics
	if s.facts != nil {
		r = s.facts.Message()
	}
	raw, release, err := s.readData(r, t.size)
	if release != nil {
		defer release()
	}
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			m.Rejections.WithLabelValues(reasonOf(se)).Inc()
			m.Transactions.WithLabelValues(metrics.Outcome(se.Code)).Inc()
			return se
		}
		// A broken connection: guard has closed it; nothing was stored.
		s.logger().Info("data aborted", "err", err)
		m.Transactions.WithLabelValues("other").Inc()
		return smtpErr(451, smtp.EnhancedCode{4, 4, 2}, "Error reading the message")
	}
	m.Bytes.Add(float64(len(raw)))
	if v := s.violation(raw); v != "" {
		m.Rejections.WithLabelValues("bare-cr-lf").Inc()
		m.Transactions.WithLabelValues("550").Inc()
		s.logger().Info("message refused", "violation", v)
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: "+v+" (RFC 5321 section 2.3.8; SMTP smuggling defence)")
	}
	if se, reason := s.headerLimits(raw); se != nil {
		m.Rejections.WithLabelValues(reason).Inc()
		m.Transactions.WithLabelValues(metrics.Outcome(se.Code)).Inc()
		s.logger().Info("message refused", "reason", se.Message)
		return se
	}
	end := s.b.cfg.Now()
	reply := s.deliver(raw, release, t, end)
	m.Transactions.WithLabelValues(metrics.Outcome(reply.Code)).Inc()
	m.Decision.Observe(s.b.cfg.Now().Sub(end).Seconds())
	return reply
}

// readData reads the whole message within the size limit (an
// smtp.ErrDataTooLarge error beyond it) and the shared memory budget.
// release returns the memory; the caller calls it once the message bytes
// are no longer needed. raw may be a pooled buffer: it must not be used
// after release.
func (s *Session) readData(r io.Reader, declared int64) (raw []byte, release func(), err error) {
	maxSize := s.b.cfg.MaxSize
	initial := int64(dataBufSize)
	if declared > initial && (maxSize <= 0 || declared <= maxSize) {
		initial = declared + 4<<10
	}
	var held int64
	budget := s.b.cfg.Budget
	var pooled *[]byte // the pool's buffer in use, until given back
	giveBack := func() {
		if pooled != nil {
			s.b.bufs.Put(pooled)
			pooled = nil
		}
	}
	release = func() {
		if budget != nil && held > 0 {
			budget.Release(held)
			held = 0
		}
		giveBack()
	}
	grow := func(n int64) error {
		if budget == nil || n <= held {
			return nil
		}
		// Memory is free nearly always: take it without a timer.
		if budget.TryAcquire(n - held) {
			held = n
			return nil
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.DBTimeout)
		defer cancel()
		if err := budget.Acquire(ctx, n-held); err != nil {
			return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system resources, try again later")
		}
		held = n
		return nil
	}
	if err := grow(initial); err != nil {
		// Keep reading so the session stays in step; go-smtp discards
		// the rest after we return.
		return nil, release, err
	}
	var buf []byte
	if initial == dataBufSize {
		pooled, _ = s.b.bufs.Get().(*[]byte)
		if pooled == nil {
			b := make([]byte, dataBufSize)
			pooled = &b
		}
		buf = (*pooled)[:0]
	} else {
		buf = make([]byte, 0, initial)
	}
	for {
		if len(buf) == cap(buf) {
			next := int64(cap(buf)) * 2
			if maxSize > 0 && next > maxSize+1 {
				next = maxSize + 1
			}
			if err := grow(next); err != nil {
				return nil, release, err
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
			giveBack() // grown out of it
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if maxSize > 0 && int64(len(buf)) > maxSize {
			// go-smtp's reader has its own limit; guard's Message has none.
			return nil, release, smtp.ErrDataTooLarge
		}
		if err == io.EOF {
			return buf, release, nil
		}
		if err != nil {
			return nil, release, err
		}
	}
}

// violation reports the framing violation guard found in the DATA stream.
// With a clean DATA it turns guard's bare-CR marks back into CRs (raw is
// changed in place). A connection without the guard (unit tests) gets the
// same rules checked on the bytes themselves.
func (s *Session) violation(raw []byte) string {
	if s.facts == nil {
		return unsafeBytes(raw)
	}
	if v := s.facts.DataViolation(); v != "" {
		return v
	}
	guard.RestoreBareCR(raw)
	return ""
}

// unsafeBytes returns why b may not be stored and passed on: a bare LF, a
// NUL, or a bare CR next to a lone dot (a line end to some servers, which
// would see an end of data there: SMTP smuggling). Other bare CRs are data
// (RFC 5321 §2.3.8: never a line end). "" if b is fine.
func unsafeBytes(b []byte) string {
	for i, c := range b {
		switch c {
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return guard.ViolationBareLF
			}
		case 0:
			return guard.ViolationNUL
		case '.':
			if i+1 >= len(b) {
				break
			}
			afterBareCR := i > 0 && b[i-1] == '\r'
			lineStart := i == 0 || (i >= 2 && b[i-2] == '\r' && b[i-1] == '\n')
			next := b[i+1]
			nextBareCR := next == '\r' && (i+2 >= len(b) || b[i+2] != '\n')
			if (afterBareCR && (next == '\r' || next == '\n')) || (lineStart && nextBareCR) {
				return guard.ViolationDotCR
			}
		}
	}
	return ""
}

// headerLimits refuses a mail that is empty or begins with a
// continuation line, whose header section is larger than MaxHeaderSize or
// that has made more than MaxHops hops, before anything is stored. reason
// is the rejection metric's label.
func (s *Session) headerLimits(raw []byte) (_ *smtp.SMTPError, reason string) {
	cfg := &s.b.cfg
	if len(raw) == 0 {
		// DATA and at once its end: no header field, no empty line (RFC
		// 5322 §3.6 asks for Date and From). Stored, such a mail was
		// never judged: its throw-in names the mail only for a message
		// of some bytes (model.Attempt: size 0 is "no message came"), so
		// spamd took the attempt for one that never reached DATA, and
		// the sender got 451 at every retry.
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: it is empty, without a header field (RFC 5322 section 3.6)"), "header"
	}
	if raw[0] == ' ' || raw[0] == '\t' {
		// A mail must begin with a header field or the empty line before
		// a body (RFC 5322 §2.2, §3.5). Behind our trace fields this line
		// would continue our Received field, so the mail cannot be stored
		// byte for byte below them (model's WithTrace refuses it too);
		// Postfix makes it the body and writes a header of its own.
		// Refused here, with a reply that says why, not rewritten.
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: it begins with a continuation line, not a header field (RFC 5322 section 2.2)"), "header"
	}
	n := model.HeaderSectionLen(raw)
	if cfg.MaxHeaderSize > 0 && n > cfg.MaxHeaderSize {
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4},
			fmt.Sprintf("Message header section too large (%d bytes, limit %d)", n, cfg.MaxHeaderSize)), "header"
	}
	if hops := model.ReceivedCount(raw[:n]); cfg.MaxHops > 0 && hops > cfg.MaxHops {
		return smtpErr(554, smtp.EnhancedCode{5, 4, 6},
			fmt.Sprintf("Too many Received fields (%d, limit %d): mail loop", hops, cfg.MaxHops)), "loop"
	}
	return nil, ""
}

func reasonOf(e *smtp.SMTPError) string {
	switch e.Code {
	case 552:
		return "size"
	case 452:
		return "resources"
	}
	return "data"
}

// deliver stores the message and waits for the decision. It releases the
// message memory as soon as dbd has it: the wait can take the whole window.
func (s *Session) deliver(raw []byte, release func(), t *txn, end time.Time) *smtp.SMTPError {
	cfg := &s.b.cfg
	rows := model.NewMailRows(raw)
	fields := [][]byte{s.traceField(t, end)}
	if !cfg.NoReturnPath {
		// Every recipient is a mailbox here: this is final delivery, and
		// the Return-Path goes above our Received field, as an MDA puts it.
		fields = [][]byte{returnPathField(t.from), fields[0]}
	}
	p, err := rows.Parts.WithTrace(fields...)
	if err != nil {
		// Our own fields are always well-formed; this is a bug.
		s.logger().Error("trace field", "err", err)
		return errTempStore
	}
	// The stored mail is our trace fields, then raw. POP3 sends it with
	// every line end as CRLF and a CRLF at the end (RFC 1939 §5); raw has
	// no bare LF (the smuggling defence refused it) and ends in CRLF
	// unless empty (DATA ends at CRLF . CRLF), so that is its length, and
	// pop3d need not read the mail to list it (model.POP3SizeColumn).
	var popSize int64
	if len(raw) == 0 || raw[len(raw)-1] == '\n' {
		popSize = int64(len(raw))
		for _, f := range fields {
			popSize += int64(len(f))
		}
	}
	rows.Parts = p
	rows.Received = p.Received
	rows.ReceivedKey = model.KeyOf(model.Received, p.Received)
	receives := deliver.ReceiveKeys(rows.MailKey, t.mailboxes)
	mail := deliver.Mail{
		Rows: rows, Mailboxes: t.mailboxes, ReceivedAt: end, Receives: receives,
		ThrowIn: s.throwIn(t, end, len(raw), rows.MailKey, rows.ReceivedKey),
	}
	// Follow the receive rows before storing them: then a fresh row's
	// every change arrives as an event and it need not be read back.
	follow := cfg.Watcher.Follow(receives)
	defer follow.Close()
	plan := deliver.PlanStore(mail)
	// Arm the acknowledgement before the store is answered, not after:
	// its keys follow from the content. dbd parks it (its rows missing or
	// undecided, this attempt's store not applied) and fires it in the
	// commit of the last verdict. Armed only after the store's answer, it
	// raced the filter, whose verdict follows the same commit: when the
	// verdict's group was already staged, the arm found its conditions met
	// and took a group commit of its own, one more fsync before the 250.
	var armed *deliver.Armed
	if s.b.armer != nil && !s.b.noArm.Load() {
		now := cfg.Now()
		wait := end.Add(cfg.Decision.Window).Sub(now)
		armed = deliver.Arm(s.ctx, s.b.armer, plan.Keys.Receives, plan.Keys.ReceivedKey, plan.Keys.ThrowInKey, now, cfg.Decision.MinCopies, wait,
			s.ackAlso(plan.Keys.ReceivedKey, plan.Keys.Receives, popSize, []wire.Request{replyField(plan.Keys.ThrowInKey, 250)})...)
	}
	t.withMail = true
	ctx, cancel := context.WithTimeout(s.ctx, cfg.DBTimeout)
	stored, err := plan.Send(ctx, s.b.db)
	cancel()
	mailKey := rows.MailKey
	rows, mail, raw, plan = model.MailRows{}, deliver.Mail{}, nil, deliver.Plan{}
	release()
	if err != nil {
		cfg.Metrics.DBErrors.WithLabelValues("store").Inc()
		s.logger().Warn("store failed", "err", err)
		if armed != nil {
			if fired, _ := armed.Withdraw(0); fired {
				// The arm waits for this attempt's stored mark, so
				// the store was applied after all (its answer lost or
				// late), the mail is accepted (and backed up) and now
				// acknowledged: it is in its mailboxes, 250 is true.
				cfg.Metrics.Acks.WithLabelValues("armed").Inc()
				s.logger().Info("store answer lost, but the armed acknowledgement fired")
				return delivered(receives[0])
			}
		}
		return s.dbReply(err, errTempStore)
	}
	s.b.full.clear()
	if s.facts != nil {
		s.facts.DataStored(replay.DataRef(mailKey, stored.ReceivedKey))
	}
	reply, recorded := s.decide(follow, stored, end, popSize, armed)
	if !recorded {
		// Off the reply's path: the answer does not wait for it.
		go s.recordReply(stored.ThrowInKey, reply.Code, cfg.Now().Sub(end))
	}
	return reply
}

// lastLook is the least decide waits, however long the store took.
const lastLook = 100 * time.Millisecond

// decide waits for the decision and acknowledges an accepted mail, with
// its POP3 size (0: unknown) on each receive row. recorded reports that
// our reply was stored on the throw-in row with the acknowledgement (one
// durable batch, not two).
//
// armed, if not nil, is the acknowledgement armed in dbd (deliver.Arm):
// with every recipient accepted it has been applied in the commit of the
// last verdict, and only its answer is awaited; whatever the outcome, a
// fired one means the mail is acknowledged, so the answer is 250.
func (s *Session) decide(follow *deliver.Following, stored deliver.Stored, end time.Time, popSize int64, armed *deliver.Armed) (*smtp.SMTPError, bool) {
	cfg := &s.b.cfg
	policy := cfg.Decision
	policy.Since = end
	// The window is the sender's wait after its final dot (SPEC §1), so
	// the store's time comes out of it; a store slower than the whole
	// window still leaves one look at the rows, where a retry finds its
	// decision.
	policy.Window = max(end.Add(policy.Window).Sub(cfg.Now()), lastLook)
	o, err := follow.Wait(s.ctx, stored.Fresh, policy)
	ok := delivered(stored.Receives[0])
	if armed != nil {
		// All accepted: the arm fired in the commit that made this
		// outcome, whose watch event is here already, and its answer is
		// close behind; wait for it even when the event shows the rows
		// acknowledged (the event may overtake the answer, and the arm
		// carries our reply for the throw-in row, which otherwise takes a
		// write of its own). Undecided at the window's end: dbd ends the
		// arm at the same moment; take its answer rather than guess. Any
		// other outcome: withdraw it at once.
		wait := time.Duration(0)
		allAccepted := err == nil && o.Kind == deliver.Accepted && o.Rejected == 0 && len(o.Accepted) == len(stored.Receives)
		if allAccepted || err == nil && o.Kind == deliver.Undecided {
			wait = armAnswerWait
		}
		fired, aerr := armed.Withdraw(wait)
		var we *wire.Error
		if errors.As(aerr, &we) && (we.Code == wire.CodeBadRequest || we.Code == wire.CodeForbidden) && !s.b.noArm.Swap(true) {
			s.logger().Warn("dbd refuses armed acknowledgements (older than smtpd?); acknowledging after the decision", "err", aerr)
		}
		if fired {
			cfg.Metrics.Acks.WithLabelValues("armed").Inc()
			s.recordDecideTime(stored.ThrowInKey, cfg.Now().Sub(end))
			return ok, true
		}
	}
	if err != nil {
		cfg.Metrics.DBErrors.WithLabelValues("watch").Inc()
		s.logger().Warn("waiting for the decision failed", "err", err)
		return s.dbReply(err, errTempStore), false
	}
	// The same line as s.logger().Info, without a logger per session.
	cfg.Logger.Info("decision", "session", s.id, "client", s.client, "outcome", o.Kind.String(), "accepted", len(o.Accepted), "rejected", o.Rejected,
		"ms", cfg.Now().Sub(end).Milliseconds())
	switch o.Kind {
	case deliver.Accepted:
		if o.Acked {
			return ok, false
		}
		now := cfg.Now()
		ctx, cancel := context.WithTimeout(s.ctx, cfg.DBTimeout)
		record := replyRecord(stored.ThrowInKey, ok.Code, now.Sub(end))
		also := s.ackAlso(stored.ReceivedKey, o.Accepted, popSize, slices.Clip(record))
		err := deliver.Acknowledge(ctx, s.b.db, o.Accepted, stored.ReceivedKey, now, also...)
		var we *wire.Error
		if popSize > 0 && errors.As(err, &we) && we.Code == wire.CodeForbidden {
			// A dbd older than this smtpd does not let the smtpd role set
			// the size column: acknowledge without it (pop3d measures the
			// mail itself then). Upgrade dbd first to save that read.
			s.logger().Warn("dbd refuses the POP3 size column; acknowledging without it", "err", err)
			err = deliver.Acknowledge(ctx, s.b.db, o.Accepted, stored.ReceivedKey, now, record...)
		}
		cancel()
		if err != nil {
			cfg.Metrics.DBErrors.WithLabelValues("acknowledge").Inc()
			s.logger().Warn("acknowledge failed", "err", err)
			return s.dbReply(err, errTempStore), false
		}
		cfg.Metrics.Acks.WithLabelValues("after").Inc()
		return ok, true
	case deliver.Rejected:
		cfg.Metrics.Rejections.WithLabelValues("spam").Inc()
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Message rejected as spam"), false
	case deliver.Retry:
		cfg.Metrics.Rejections.WithLabelValues("greylist").Inc()
		return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "Greylisted: please try again later"), false
	}
	cfg.Metrics.Rejections.WithLabelValues("undecided").Inc()
	return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "Not yet decided: please try again later"), false
}

// delivered is the 250 reply for a mail acknowledged in its mailboxes;
// the receive row's key prefix lets an operator find it.
func delivered(receive model.Key) *smtp.SMTPError {
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "Ok: delivered as "+receive.String()[:16])
}

// armAnswerWait bounds the wait for an armed acknowledgement's answer
// once the watch has shown the outcome (the answer and the event leave
// dbd after the same commit), and for dbd's own end of an arm whose
// window ran out. Past it smtpd acknowledges itself, or answers 451.
const armAnswerWait = 2 * time.Second

// ackAlso returns also with, if popSize is known (> 0), the POP3 size
// column (model.POP3SizeColumn) of each of rows: requests to send with
// their acknowledgement.
func (s *Session) ackAlso(received model.Key, rows []model.Key, popSize int64, also []wire.Request) []wire.Request {
	if popSize <= 0 {
		return also
	}
	col := model.POP3SizeColumn(received)
	for _, k := range rows {
		also = append(also, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: col, Value: uint64(popSize)})
	}
	return also
}

// replyField is the request that stores our reply on the throw-in row.
func replyField(throwIn model.Key, code int) wire.Request {
	return wire.Request{Op: wire.OpSet, Table: model.ThrowIn, Ref: wire.Ref{ByKey: true, Key: throwIn}, Name: "reply", Value: uint64(code)}
}

// decideField is the request that stores the decision time on the
// throw-in row.
func decideField(throwIn model.Key, took time.Duration) wire.Request {
	return wire.Request{Op: wire.OpSet, Table: model.ThrowIn, Ref: wire.Ref{ByKey: true, Key: throwIn}, Name: "decide.ms", Value: uint64(max(took.Milliseconds(), 0))}
}

// replyRecord is the requests that store our reply and the decision time
// on the throw-in row.
func replyRecord(throwIn model.Key, code int, took time.Duration) []wire.Request {
	return []wire.Request{replyField(throwIn, code), decideField(throwIn, took)}
}

// recordDecideTime stores, off the reply's path, the decision time of a
// mail whose reply the armed acknowledgement stored; best effort, like
// recordReply.
func (s *Session) recordDecideTime(throwIn model.Key, took time.Duration) {
	reqs := []wire.Request{decideField(throwIn, took)}
	if rec := s.b.cfg.Record; rec != nil {
		rec(reqs)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(s.b.base, s.b.cfg.DBTimeout)
		defer cancel()
		if _, err := s.b.db.Batch(ctx, reqs); err != nil {
			s.b.cfg.Metrics.DBErrors.WithLabelValues("throw-in").Inc()
			s.logger().Warn("recording the decision time failed", "err", err)
		}
	}()
}

// recordReply stores our reply and the decision time on the throw-in row.
// It is best effort: the reply is already decided and the mail stored. It
// may run after the session ended, so it uses the backend's context.
func (s *Session) recordReply(throwIn model.Key, code int, took time.Duration) {
	ctx, cancel := context.WithTimeout(s.b.base, s.b.cfg.DBTimeout)
	defer cancel()
	_, err := s.b.db.Batch(ctx, replyRecord(throwIn, code, took))
	if err != nil {
		s.b.cfg.Metrics.DBErrors.WithLabelValues("throw-in").Inc()
		s.logger().Warn("recording the reply failed", "err", err)
	}
}

// Reset implements smtp.Session.
func (s *Session) Reset() { s.finishTxn() }

// Logout implements smtp.Session. (The transcript is stored by the daemon
// when the connection closes, for sessions that never said EHLO too.)
func (s *Session) Logout() error {
	s.finishTxn()
	s.cancel()
	s.b.cfg.Metrics.SessionsActive.Dec()
	if s.b.cfg.Logger.Enabled(s.b.base, slog.LevelDebug) {
		s.logger().Debug("session end", "attempts", s.attempts)
	}
	return nil
}

// finishTxn records a transaction whose throw-in did not go with a stored
// mail (every recipient refused, RSET, or its message refused before it
// was stored): every attempt gets a throw-in row.
func (s *Session) finishTxn() {
	t := s.txn
	s.txn = nil
	if t == nil || t.withMail || (len(t.rcpts) == 0 && len(t.refused) == 0) {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.DBTimeout)
	defer cancel()
	if _, _, err := s.b.db.FindOrInsert(ctx, model.ThrowIn, s.throwIn(t, s.b.cfg.Now(), 0, model.Key{}, model.Key{})); err != nil {
		s.b.cfg.Metrics.DBErrors.WithLabelValues("throw-in").Inc()
		s.logger().Warn("recording the attempt failed", "err", err)
	}
}

// throwIn is the content of the throw-in row of one attempt (a
// model.Attempt), unique per session and attempt. With a message it names
// the mail and received rows stored, so that after the loss of a site the
// other can find the Received fields of a mail whose acknowledgement it
// never got (dbctl recover-acks).
func (s *Session) throwIn(t *txn, at time.Time, size int, mail, received model.Key) []byte {
	a := model.Attempt{Session: s.id, Attempt: s.attempts, Time: at, Client: s.client, Helo: oneLine(s.conn.Hostname()),
		TLS: s.tlsInfo(), From: oneLine(t.from), Size: size, Mail: mail, HasMail: size > 0,
		Received: received, HasReceived: size > 0}
	for _, r := range t.rcpts {
		a.Rcpts = append(a.Rcpts, oneLine(r))
	}
	for _, r := range t.refused {
		a.Refused = append(a.Refused, oneLine(r))
	}
	return a.Content()
}

func (s *Session) tlsInfo() string {
	if s.facts == nil {
		return "none"
	}
	st, ok := s.facts.TLS()
	if !ok {
		return "none"
	}
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// traceField is smtpd's Received field (RFC 5321 §4.4). The client's HELO
// name is untrusted: only characters that cannot break the field are kept.
func (s *Session) traceField(t *txn, at time.Time) []byte {
	with := s.protocol()
	// Appended, not formatted: one per mail.
	b := make([]byte, 0, 160+len(s.conn.Hostname())+len(s.b.cfg.Hostname)+len(s.id))
	b = appendTraceSafe(append(b, "Received: from "...), s.conn.Hostname())
	b = append(appendAddressLiteral(append(b, " ("...), s.client), ")\r\n\tby "...)
	b = appendTraceSafe(b, s.b.cfg.Hostname)
	b = append(append(append(append(append(b, " (twinmx) with "...), with...), " id "...), s.id...), '.')
	b = strconv.AppendInt(b, int64(s.attempts), 10)
	if len(t.rcpts) == 1 {
		b = append(appendTraceSafe(append(b, "\r\n\tfor <"...), t.rcpts[0]), '>')
	}
	b = at.AppendFormat(append(b, ";\r\n\t"...), time.RFC1123Z)
	return append(b, "\r\n"...)
}

// maxSender is the longest sender address Mail takes: its Return-Path
// field is then a line of 998 octets, RFC 5322 §2.1.1's limit. RFC 5321
// bounds a path at 256 octets (§4.5.3.1.3) but asks servers to take
// longer ones where they can (§4.5.3.1), and forwarders' rewritten senders
// (SRS) do exceed it; past this length a sender is refused with §4.5.3.1.10's
// "501 Path too long" rather than stored with a line readers may cut.
const maxSender = 998 - len("Return-Path: <>")

// returnPathField is the Return-Path field of final delivery (RFC 5321
// §4.4): the reverse-path of MAIL FROM, "<>" for the null sender of a
// bounce. Mail refused control bytes in it, so the field is one line, and
// senders longer than maxSender, so it is at most 998 octets.
func returnPathField(from string) []byte {
	b := make([]byte, 0, len(from)+len("Return-Path: <>\r\n"))
	return append(append(append(b, "Return-Path: <"...), from...), ">\r\n"...)
}

// protocol is the trace field's "with" (RFC 5321 §4.4, RFC 3848): SMTP
// after HELO, ESMTP after EHLO, ESMTPS once STARTTLS has completed.
func (s *Session) protocol() string {
	switch {
	case s.tlsInfo() != "none":
		return "ESMTPS"
	case s.facts != nil && !s.facts.Extended():
		return "SMTP"
	default:
		return "ESMTP"
	}
}

// appendAddressLiteral appends the client's IP address (client is
// IP:port) as RFC 5321 §4.1.3 writes it in a trace field: [192.0.2.1],
// or [IPv6:2001:db8::1] — an IPv6 address needs the tag, which is how
// Postfix writes it too and what parsers of Received fields expect.
func appendAddressLiteral(b []byte, client string) []byte {
	ip := client
	if h, _, err := net.SplitHostPort(client); err == nil {
		ip = h
	}
	b = append(b, '[')
	if strings.Contains(ip, ":") {
		b = append(b, "IPv6:"...)
	}
	return append(appendTraceSafe(b, ip), ']')
}

// appendTraceSafe appends s with every byte that could break the trace
// field made '?', at most 255 bytes of it, "unknown" for "".
func appendTraceSafe(b []byte, s string) []byte {
	if s == "" {
		return append(b, "unknown"...)
	}
	if len(s) > 255 {
		s = s[:255]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == ';' || c == '<' || c == '>' || c == '\\' {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return '?'
		}
		return r
	}, s)
}
