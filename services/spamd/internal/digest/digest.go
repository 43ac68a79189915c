package digest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
)

// DB is what the digest needs of a dbd client; *client.Client implements it.
type DB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	ScanKeys(ctx context.Context, t model.Table, limit int) ([]model.Key, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var _ DB = (*client.Client)(nil)

// Sender hands one mail to an SMTP server; SMTPSender implements it.
type Sender interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// DefaultLocalPart is the local part of the default allow address.
const DefaultLocalPart = "twinmx-allow"

// Config configures a Digester. Zero values mean the defaults.
type Config struct {
	DB DB
	// Every is the digest period (default 1 hour, at least 1 second).
	// Periods are aligned to the Unix epoch, the same on every instance.
	Every time.Duration
	// Sender delivers digests (default: SMTPSender to SMTP).
	Sender Sender
	// SMTP is the local smtpd's HOST:PORT (default 127.0.0.1:25).
	SMTP string
	// Address is the allow address every digest's Reply-To names (default
	// "": DefaultLocalPart at the mailbox's own domain).
	Address string
	// Scan is how many of the newest receive rows (and throw-ins, for
	// the envelope senders) a pass reads (default 20000).
	Scan int
	// ClaimWait is how long a pass waits between claiming mailboxes and
	// sending, so that claims of other instances arrive (default 30s;
	// negative: no wait). Longer than the replication lag between sites.
	ClaimWait time.Duration
	// Lookback: refusals older than this are never listed (default 48h):
	// the first pass after installing does not list months of refusals.
	Lookback time.Duration
	// TokenMaxAge: an allow token older than this allows nothing (default
	// 30 days).
	TokenMaxAge time.Duration
	// MaxEntries bounds the refusals listed one by one in a digest
	// (default 200): the oldest. The rest are listed by sender, one line
	// with an ALLOW token each (Digest.Others).
	MaxEntries int
	// MaxSenders bounds the senders listed that way (default 500); the
	// senders beyond are only counted. MaxEntries and MaxSenders together
	// must keep the largest possible digest within maxOwnSize (Validate).
	MaxSenders int
	// Hostname is our name in EHLO (default os.Hostname).
	Hostname string
	Logger   *slog.Logger
	Metrics  *Metrics
}

func (c *Config) applyDefaults() {
	if c.Every == 0 {
		c.Every = time.Hour
	}
	if c.SMTP == "" {
		c.SMTP = "127.0.0.1:25"
	}
	if c.Scan == 0 {
		c.Scan = 20000
	}
	if c.ClaimWait == 0 {
		c.ClaimWait = 30 * time.Second
	}
	if c.Lookback == 0 {
		c.Lookback = 48 * time.Hour
	}
	if c.TokenMaxAge == 0 {
		c.TokenMaxAge = 30 * 24 * time.Hour
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = defaultMaxEntries
	}
	if c.MaxSenders == 0 {
		c.MaxSenders = defaultMaxSenders
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
		if c.Hostname == "" {
			c.Hostname = "localhost"
		}
	}
	if c.Sender == nil {
		c.Sender = SMTPSender{Addr: c.SMTP, Helo: c.Hostname}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("digest: no DB"))
	}
	if c.Every != 0 && c.Every < time.Second {
		errs = append(errs, fmt.Errorf("digest: period %s is shorter than 1s", c.Every))
	}
	if c.Address != "" && !strings.Contains(c.Address, "@") {
		errs = append(errs, fmt.Errorf("digest: allow address %q is not LOCAL@DOMAIN", c.Address))
	}
	if c.Scan < 0 || c.MaxEntries < 0 || c.MaxSenders < 0 {
		errs = append(errs, errors.New("digest: scan, max entries and max senders must not be negative"))
	} else if n := maxDigestBytes(cmp.Or(c.MaxEntries, defaultMaxEntries), cmp.Or(c.MaxSenders, defaultMaxSenders)); n > maxOwnSize {
		// A larger digest would not verify as our own (IsOwn), and judge
		// would treat it like any mail.
		errs = append(errs, fmt.Errorf("digest: %d entries and %d senders make digests of up to %d bytes, more than %d", c.MaxEntries, c.MaxSenders, n, maxOwnSize))
	}
	return errors.Join(errs...)
}

// Defaults of MaxEntries and MaxSenders: the largest digest they allow,
// maxDigestBytes(200, 500), is 3,805,184 bytes, within maxOwnSize (4 MiB;
// the worst case built in TestDigestSizeBound is 3.3 MB).
const (
	defaultMaxEntries = 200
	defaultMaxSenders = 500
)

// Digester sends the hourly rejection digests and reads the replies that
// allow senders (see the package doc). It is safe for concurrent use:
// Run in one goroutine, the judge's hooks in others.
type Digester struct {
	cfg Config
	log *slog.Logger
}

var _ judge.Digests = (*Digester)(nil)

// New returns a Digester; cfg must pass Validate.
func New(cfg Config) *Digester {
	cfg.applyDefaults()
	return &Digester{cfg: cfg, log: cfg.Logger}
}

// ReplyAddress returns the allow address for the digest of mailbox.
func (d *Digester) ReplyAddress(mailbox string) string {
	if d.cfg.Address != "" {
		return d.cfg.Address
	}
	return DefaultLocalPart + "@" + domainOf(mailbox)
}

// IsReplyAddress reports whether mailbox is an allow address.
func (d *Digester) IsReplyAddress(mailbox string) bool {
	if d.cfg.Address != "" {
		return strings.EqualFold(mailbox, d.cfg.Address)
	}
	at := strings.LastIndexByte(mailbox, '@')
	return at >= 0 && strings.EqualFold(mailbox[:at], DefaultLocalPart)
}

// Own reports whether raw is a digest spamd made for mailbox (its
// HeaderName MAC verifies with the secret in dbd).
func (d *Digester) Own(ctx context.Context, mailbox string, raw []byte) (bool, error) {
	h := bytes.ToLower(model.Split(raw).Header)
	if !bytes.Contains(h, []byte(strings.ToLower(HeaderName)+":")) {
		return false, nil
	}
	s, err := readSecret(ctx, d.cfg.DB)
	if errors.Is(err, errNoSecret) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s.IsOwn(mailbox, raw), nil
}

// Run sends digests at the end of every period until ctx ends. A failed
// pass is logged; its refusals stay unmarked and go into the next digest.
func (d *Digester) Run(ctx context.Context) error {
	every := d.cfg.Every.Milliseconds()
	for {
		next := time.UnixMilli((time.Now().UnixMilli()/every + 1) * every)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		n, err := d.Pass(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			d.cfg.Metrics.Errors.WithLabelValues("pass").Inc()
			d.log.Warn("digest pass failed", "err", err)
		case n > 0:
			d.log.Info("digests sent", "mailboxes", n)
		}
	}
}

// refusal is one refused receive row.
type refusal struct {
	receive, mail model.Key
	state         model.State
	src           model.Source
	time          time.Time
	envelope      string
}

// box is one mailbox with refusals to list.
type box struct {
	key      model.Key
	address  string
	refusals []*refusal
	claim    uint64
	sent     uint64 // the previous digest's colSent
}

// Pass sends this period's digest to every mailbox with refusals not yet
// listed, claiming each first (see won). It returns how many it sent.
func (d *Digester) Pass(ctx context.Context, now time.Time) (int, error) {
	period := uint64(now.UnixMilli() / d.cfg.Every.Milliseconds())
	s, err := ensureSecret(ctx, d.cfg.DB)
	if err != nil {
		return 0, err
	}
	boxes, err := d.pending(ctx, now)
	if err != nil {
		return 0, err
	}
	claimed, err := d.claim(ctx, boxes, period)
	if err != nil || len(claimed) == 0 {
		return 0, err
	}
	if d.cfg.ClaimWait > 0 {
		t := time.NewTimer(d.cfg.ClaimWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
	if err := d.envelopes(ctx, claimed); err != nil {
		return 0, err
	}
	sent := 0
	for _, b := range claimed {
		st, err := d.state(ctx, b.address)
		if err != nil {
			return sent, err
		}
		if !won(st, b.claim) {
			d.log.Debug("digest claimed by another instance", "mailbox", b.address)
			continue
		}
		if err := d.send(ctx, s, b, now, period); err != nil {
			if ctx.Err() != nil {
				return sent, ctx.Err()
			}
			d.cfg.Metrics.Errors.WithLabelValues("send").Inc()
			d.log.Warn("sending a digest failed; its refusals go into the next", "mailbox", b.address, "err", err)
			continue
		}
		sent++
	}
	return sent, nil
}

// pending returns the mailboxes with refusals within the lookback that no
// digest listed yet, from the newest Scan receive rows.
func (d *Digester) pending(ctx context.Context, now time.Time) ([]*box, error) {
	keys, err := d.cfg.DB.ScanKeys(ctx, model.Receive, d.cfg.Scan)
	if err != nil {
		return nil, err
	}
	byKey := map[model.Key]*box{}
	missing := map[model.Key]bool{} // mailbox rows not replicated yet
	var out []*box
	for _, k := range keys {
		row, err := d.cfg.DB.FindKey(ctx, model.Receive, k)
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read receive row: %w", err)
		}
		r, mbox, ok := refused(row, now.Add(-d.cfg.Lookback))
		if !ok {
			continue
		}
		b := byKey[mbox]
		if b == nil && missing[mbox] {
			continue
		}
		if b == nil {
			mrow, err := d.cfg.DB.FindKey(ctx, model.Mailbox, mbox)
			if errors.Is(err, client.ErrNotFound) {
				// The receive row replicated before its mailbox row. Failing
				// the pass would hold back every mailbox's digest until it
				// arrives; its refusals stay unmarked and go into a later
				// digest instead.
				missing[mbox] = true
				d.log.Warn("a refusal's mailbox row is not here yet; it is listed in a later digest", "mailbox", mbox, "receive", k)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read mailbox %s: %w", mbox, err)
			}
			b = &box{key: mbox, address: string(mrow.Content)}
			byKey[mbox] = b
			if !d.IsReplyAddress(b.address) { // replies refused there are not news to anyone
				out = append(out, b)
			}
		}
		b.refusals = append(b.refusals, r)
	}
	return out, nil
}

// refused returns the refusal a receive row holds: a verdict that decodes
// to Reject (any source) at or after since, not yet listed in a digest.
func refused(row *wire.Row, since time.Time) (*refusal, model.Key, bool) {
	src, epoch, v, ok := model.DecodeVerdict(row.State.Col(model.ColVerdict))
	if !ok || v != model.Reject || row.State.Col(colDigested) != 0 {
		return nil, model.Key{}, false
	}
	t := time.Unix(int64(epoch), 0)
	if t.Before(since) {
		return nil, model.Key{}, false
	}
	mail, mbox, err := model.ParseReceiveContent(row.Content)
	if err != nil {
		return nil, model.Key{}, false
	}
	return &refusal{receive: row.Key, mail: mail, state: row.State, src: src, time: t}, mbox, true
}

func (d *Digester) state(ctx context.Context, mailbox string) (model.State, error) {
	row, err := d.cfg.DB.FindKey(ctx, model.Config, model.KeyOf(model.Config, stateContent(mailbox)))
	if errors.Is(err, client.ErrNotFound) {
		return model.State{}, nil
	}
	if err != nil {
		return model.State{}, fmt.Errorf("read digest state of %s: %w", mailbox, err)
	}
	return row.State, nil
}

// claim claims period's digest of every mailbox still unclaimed and
// returns those.
func (d *Digester) claim(ctx context.Context, boxes []*box, period uint64) ([]*box, error) {
	var out []*box
	for _, b := range boxes {
		st, err := d.state(ctx, b.address)
		if err != nil {
			return nil, err
		}
		if !mayClaim(st, period) {
			continue
		}
		var n [4]byte
		rand.Read(n[:])
		b.claim = claimValue(period, binary.BigEndian.Uint32(n[:])|1)
		b.sent = st.Col(colSent)
		sc := stateContent(b.address)
		if _, err := d.cfg.DB.Batch(ctx, []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Config, Content: sc},
			{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: sc}, Name: colClaim, Value: b.claim},
		}); err != nil {
			return nil, fmt.Errorf("claim digest of %s: %w", b.address, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// envelopes fills in the refusals' envelope senders from the newest
// throw-ins (the receive row does not hold it). A refusal whose throw-in
// is older than the scan keeps "": listed, but without an ALLOW line.
func (d *Digester) envelopes(ctx context.Context, boxes []*box) error {
	type target struct{ mail, mbox model.Key }
	want := map[target]*refusal{}
	for _, b := range boxes {
		for _, r := range b.refusals {
			want[target{r.mail, b.key}] = r
		}
	}
	keys, err := d.cfg.DB.ScanKeys(ctx, model.ThrowIn, d.cfg.Scan)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if len(want) == 0 {
			return nil
		}
		row, err := d.cfg.DB.FindKey(ctx, model.ThrowIn, k)
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read throw-in: %w", err)
		}
		a, err := model.ParseThrowIn(row.Content)
		if err != nil || !a.HasMail {
			continue
		}
		for _, rcpt := range a.Rcpts {
			t := target{a.Mail, model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))}
			if r := want[t]; r != nil {
				r.envelope = a.From // the newest attempt: the one refused
				delete(want, t)
			}
		}
	}
	return nil
}

// send lists b's refusals in one digest, records its tokens, hands it to
// smtpd and then marks the refusals listed. A failure before the mark
// leaves them for the next digest (a duplicate at worst, never a loss).
func (d *Digester) send(ctx context.Context, s Secret, b *box, now time.Time, period uint64) error {
	slices.SortFunc(b.refusals, func(x, y *refusal) int { return x.time.Compare(y.time) })
	dg := Digest{Mailbox: b.address, ReplyTo: d.ReplyAddress(b.address), Date: now, Since: b.refusals[0].time,
		MsgID: fmt.Sprintf("twinmx-digest.%d.%s@%s", period, randomHex(8), domainOf(b.address))}
	if b.sent > 0 {
		dg.Since = time.UnixMilli(int64(b.sent))
	}
	var toks issues
	n := min(len(b.refusals), d.cfg.MaxEntries)
	for _, r := range b.refusals[:n] {
		e, err := d.entry(ctx, s, b.address, r)
		if err != nil {
			return err
		}
		if e.Token != "" {
			toks.add(e.Token, e.Envelope, r.receive) // a sender listed twice: one token
		}
		dg.Entries = append(dg.Entries, e)
	}
	addRest(s, b.address, &dg, b.refusals[n:], d.cfg.MaxSenders, &toks)
	// Recorded before sending: the reply may come at once.
	reqs := []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent(dg.ReplyTo)}}
	for _, ti := range toks.order {
		gen, err := linkGen(ctx, d.cfg.DB, ti.token, len(ti.refusals))
		if err != nil {
			return err
		}
		reqs = append(reqs, issueRequests(ti.token, b.address, ti.sender, ti.refusals, gen, now)...)
	}
	if err := d.batch(ctx, reqs); err != nil {
		return fmt.Errorf("record allow tokens: %w", err)
	}
	if err := d.cfg.Sender.Send(ctx, "", b.address, Build(s, dg)); err != nil {
		return err
	}
	d.cfg.Metrics.Sent.Inc()
	ms := uint64(max(now.UnixMilli(), 1))
	sc := stateContent(b.address)
	reqs = []wire.Request{
		{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: sc}, Name: colSent, Value: ms},
		{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: sc}, Name: colDone, Value: period},
	}
	for _, r := range b.refusals {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: r.receive}, Name: colDigested, Value: ms})
	}
	if err := d.batch(ctx, reqs); err != nil {
		return fmt.Errorf("mark refusals listed: %w", err)
	}
	d.log.Info("digest sent", "mailbox", b.address, "refusals", len(b.refusals), "listed", len(dg.Entries),
		"other_senders", len(dg.Others), "hidden_senders", dg.HiddenSenders)
	return nil
}

// entry reads what a digest lists about refusal r: reason, From, Subject.
func (d *Digester) entry(ctx context.Context, s Secret, mailbox string, r *refusal) (Entry, error) {
	e := Entry{Time: r.time, Envelope: r.envelope, Reason: "(no reason recorded)"}
	if r.src == model.SourceOperator {
		e.Reason = "refused by an operator"
	}
	if rk, ok := model.LatestReason(r.state); ok {
		row, err := d.cfg.DB.FindKey(ctx, model.Text, rk)
		switch {
		case err == nil:
			if reason, ok := model.ParseReason(row.Content); ok && r.src == model.SourceFilter {
				e.Reason = reason
			}
		case !errors.Is(err, client.ErrNotFound):
			return e, fmt.Errorf("read reason: %w", err)
		}
	}
	hdr, err := d.header(ctx, r.mail)
	if err != nil {
		return e, err
	}
	if msg, err := mail.ReadMessage(bytes.NewReader(hdr)); err == nil {
		e.From = decodeHeader(msg.Header.Get("From"))
		e.Subject = decodeHeader(msg.Header.Get("Subject"))
	} else if from, subject, ok := looseFields(hdr); ok {
		// One broken line (no colon, a stray continuation first) makes
		// net/mail refuse the whole header; the owner still needs From and
		// Subject to tell a wanted mail, which is likelier refused for it.
		e.From, e.Subject = decodeHeader(from), decodeHeader(subject)
	} else {
		e.Subject = "(unreadable header)"
	}
	if e.Envelope != "" {
		e.Token = s.Token(mailbox, e.Envelope)
	}
	return e, nil
}

func (d *Digester) header(ctx context.Context, mk model.Key) ([]byte, error) {
	m, err := d.cfg.DB.FindKey(ctx, model.Mail, mk)
	if err != nil {
		return nil, fmt.Errorf("read mail: %w", err)
	}
	hk, _, err := model.ParseMailContent(m.Content)
	if err != nil {
		return nil, fmt.Errorf("mail %s: %w", mk, err)
	}
	h, err := d.cfg.DB.FindKey(ctx, model.Header, hk)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	return h.Content, nil
}

// batch applies reqs in batches of at most wire.MaxBatchOps.
func (d *Digester) batch(ctx context.Context, reqs []wire.Request) error {
	for len(reqs) > 0 {
		n := min(len(reqs), wire.MaxBatchOps)
		if _, err := d.cfg.DB.Batch(ctx, reqs[:n]); err != nil {
			return err
		}
		reqs = reqs[n:]
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
