package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/smsd/internal/claim"
	"github.com/twinmx/twinmx/services/smsd/internal/gateway"
)

// DB is what the engine needs of a dbd client; *client.Client implements
// it.
type DB interface {
	mailbox.DB
	ScanKeys(ctx context.Context, t model.Table, limit int) ([]model.Key, error)
}

var _ DB = (*client.Client)(nil)

// Relay delivers a forward copy (relay.Relay). An error with a method
// Permanent() bool that returns true (relay.DeliveryError for a 5xx to
// RCPT TO or DATA) gives the address up at once; any other error is
// retried.
type Relay interface {
	Send(ctx context.Context, to string, raw []byte) error
}

// Config configures an Engine. Zero values mean the defaults.
type Config struct {
	DB   DB
	Site claim.Site // required
	// SMS is the gateway; nil: SMS rules are not served.
	SMS gateway.Gateway
	// Relay delivers forward copies; nil: forward rules are not served.
	Relay Relay
	// PeerDelay is how long site B waits for site A's claim. Default 60 s.
	PeerDelay time.Duration
	// ClaimTimeout is how long a claim lives without a refresh before the
	// other site takes it over. Default 5 minutes.
	ClaimTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts of a
	// failing gateway or relay. Defaults 5 s and 5 minutes; RetryMax is
	// cut to ClaimTimeout/3 so a retrying owner refreshes its claim in
	// time.
	RetryMin, RetryMax time.Duration
	// MaxTries is the number of attempts before a row is given up.
	// Default 10.
	MaxTries int
	// Limit is the per-number rate limit; nil: none.
	Limit *gateway.Limiter
	// Backlog is how many of the newest receive rows are looked at on
	// start (default 5000).
	Backlog int
	// Workers handle rows concurrently (default 4).
	Workers int
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

func (c *Config) applyDefaults() {
	if c.PeerDelay == 0 {
		c.PeerDelay = time.Minute
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = 5 * time.Minute
	}
	if c.RetryMin == 0 {
		c.RetryMin = 5 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Minute
	}
	c.RetryMax = max(min(c.RetryMax, c.ClaimTimeout/3), c.RetryMin)
	if c.MaxTries <= 0 {
		c.MaxTries = 10
	}
	if c.Backlog == 0 {
		c.Backlog = 5000
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("notify: DB is required"))
	}
	if c.Site != claim.SiteA && c.Site != claim.SiteB {
		errs = append(errs, errors.New("notify: Site must be A or B"))
	}
	if c.SMS == nil && c.Relay == nil {
		errs = append(errs, errors.New("notify: give an SMS gateway, a relay, or both"))
	}
	return errors.Join(errs...)
}

// kind is one sort of notification and its columns on the receive row:
// PREFIX.claim (claim.Value); per target PREFIX.s.<hash> (confirmation,
// claim.Value), PREFIX.t.<hash> (its failed attempts) and PREFIX.f.<hash>
// (given up, claim.Value); PREFIX.tries (attempts in which a target
// failed). PREFIX.failed (the whole kind given up, claim.Value) is only
// read: smsd before per-target give-up wrote it, and those rows stay
// given up.
type kind struct {
	label, prefix string
}

var (
	kindSMS     = kind{label: "sms", prefix: "sms."}
	kindForward = kind{label: "forward", prefix: "fwd."}
)

func (k kind) claimCol() string  { return k.prefix + "claim" }
func (k kind) triesCol() string  { return k.prefix + "tries" }
func (k kind) failedCol() string { return k.prefix + "failed" }

var hashEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// targetCol is the column of one target (phone number or address) for
// sort (s., t. or f.): the first 80 bits of its SHA-256, base32.
func (k kind) targetCol(sort, target string) string {
	h := sha256.Sum256([]byte(target))
	return k.prefix + sort + hashEnc.EncodeToString(h[:10])
}

// doneCol confirms the target; tryCol counts its failed attempts;
// goneCol marks it given up. The give-up is per target, so a number
// refused for good does not end the SMS to a number of the same mail
// that the rate limit holds back.
func (k kind) doneCol(target string) string { return k.targetCol("s.", target) }
func (k kind) tryCol(target string) string  { return k.targetCol("t.", target) }
func (k kind) goneCol(target string) string { return k.targetCol("f.", target) }

// Engine finds acknowledged, accepted mail and sends what the mailboxes'
// rules ask for, once for both sites. Create it with New and call Run.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	sched *scheduler

	mu        sync.Mutex
	firstSeen map[model.Key]time.Time // rows waiting here: when first seen ready
	retryAt   map[retryKey]time.Time
	claims    map[retryKey]seenClaim // the claim last seen on a row, and when first seen
	missing   map[model.Key]int      // looks that found the row's mail, header or body missing
	texts     map[model.Key][]byte   // text row contents (immutable) by key
}

// seenClaim is a claim column value and when this instance first saw it.
type seenClaim struct {
	value uint64
	at    time.Time
}

type retryKey struct {
	row  model.Key
	kind string
}

// New returns an Engine; cfg must pass Validate.
func New(cfg Config) (*Engine, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, firstSeen: map[model.Key]time.Time{},
		retryAt: map[retryKey]time.Time{}, claims: map[retryKey]seenClaim{}, missing: map[model.Key]int{},
		texts: map[model.Key][]byte{}}
	e.sched = newScheduler(cfg.Now, cfg.Metrics.Pending)
	return e, nil
}

// ready reports whether a receive row's mail is in its mailbox and
// accepted: acknowledged by smtpd and judged accept.
func ready(st model.State) bool {
	_, _, v, ok := model.DecodeVerdict(st.Col(model.ColVerdict))
	return st.Col(model.ColAcknowledged) == model.FlagSet && ok && v == model.Accept
}

// Run serves until ctx ends: it watches every receive row, looks at the
// newest Backlog rows, then at each row that changes. A broken stream is
// subscribed again (and the backlog read again) after a pause.
func (e *Engine) Run(ctx context.Context) error {
	work := make(chan model.Key)
	var wg sync.WaitGroup
	for range e.cfg.Workers {
		wg.Go(func() {
			for k := range work {
				next, again := e.process(ctx, k)
				e.sched.finish(k, next, again)
			}
		})
	}
	wg.Go(func() {
		e.sched.run(ctx, work)
		close(work)
	})
	defer wg.Wait()
	client.Resubscribe(ctx, time.Second, e.watch, func(err error) {
		e.cfg.Metrics.Errors.WithLabelValues("watch").Inc()
		e.log.Warn("receive watch ended; subscribing again", "err", err)
	})
	return nil
}

func (e *Engine) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := e.cfg.DB.Watch(ctx, model.Receive, nil, false)
	if err != nil {
		return fmt.Errorf("watch receive: %w", err)
	}
	defer st.Close()
	backlog, err := e.cfg.DB.ScanKeys(ctx, model.Receive, e.cfg.Backlog)
	if err != nil {
		return fmt.Errorf("read the backlog: %w", err)
	}
	for _, k := range backlog {
		e.sched.poke(k)
	}
	e.log.Info("watching receive rows", "backlog", len(backlog))
	for {
		row, err := st.Next(ctx)
		if err != nil {
			return err
		}
		if ready(row.State) {
			e.sched.poke(row.Key)
		}
	}
}

// process looks at one receive row. It returns when to look again (again
// false: only when the row changes).
func (e *Engine) process(ctx context.Context, key model.Key) (time.Time, bool) {
	next, again, err := e.processRow(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}, false
		}
		// The rows a look reads that may be missing are handled where
		// they are read (receive, mailbox, text rows); a not-found here
		// is the mail, header or body row.
		if errors.Is(err, client.ErrNotFound) {
			return e.missingRow(key, err)
		}
		e.cfg.Metrics.Errors.WithLabelValues("process").Inc()
		e.log.Warn("looking at a receive row failed; trying again", "receive", key, "err", err)
		return e.cfg.Now().Add(e.cfg.RetryMin), true
	}
	if !again {
		e.forget(key)
	} else {
		e.mu.Lock()
		delete(e.missing, key)
		e.mu.Unlock()
	}
	return next, again
}

// missingRow handles a look that found the row's mail, header or body
// row missing here. One not yet replicated arrives soon, but does not
// change the receive row (nothing pokes it), so the row is looked at
// again after a backoff. One that never arrives (lost, or a broken
// row) must not cost a look and a warning every RetryMin forever: after
// MaxTries looks smsd logs once and looks again only when the receive
// row changes (or after a restart).
func (e *Engine) missingRow(key model.Key, err error) (time.Time, bool) {
	e.mu.Lock()
	e.missing[key]++
	n := e.missing[key]
	e.mu.Unlock()
	if n >= e.cfg.MaxTries {
		e.forget(key)
		e.cfg.Metrics.Errors.WithLabelValues("missing").Inc()
		e.log.Error("the mail of a receive row is not here; not looking again until the row changes",
			"receive", key, "looks", n, "err", err)
		return time.Time{}, false
	}
	wait := gateway.Backoff(n, e.cfg.RetryMin, e.cfg.RetryMax)
	e.log.Debug("the mail of a receive row is not here yet; looking again", "receive", key, "looks", n, "in", wait, "err", err)
	return e.cfg.Now().Add(wait), true
}

func (e *Engine) forget(key model.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.firstSeen, key)
	delete(e.missing, key)
	for _, k := range []kind{kindSMS, kindForward} {
		delete(e.retryAt, retryKey{key, k.label})
		delete(e.claims, retryKey{key, k.label})
	}
}

// claimSeen returns when this instance first saw the claim value v of
// kind k on row key, and whether that is now.
func (e *Engine) claimSeen(key model.Key, k kind, v uint64, now time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rk := retryKey{key, k.label}
	if c, ok := e.claims[rk]; ok && c.value == v {
		return c.at, false
	}
	e.claims[rk] = seenClaim{value: v, at: now}
	return now, true
}

func (e *Engine) seen(key model.Key, now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.firstSeen[key]
	if !ok {
		e.firstSeen[key] = now
		t = now
	}
	return t
}

// job is one receive row being looked at.
type job struct {
	key     model.Key
	row     *wire.Row
	mail    model.Key
	box     model.Key
	address string
	seen    time.Time
}

func (e *Engine) processRow(ctx context.Context, key model.Key) (time.Time, bool, error) {
	row, err := e.cfg.DB.FindKey(ctx, model.Receive, key)
	if errors.Is(err, client.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read receive row: %w", err)
	}
	if !ready(row.State) {
		return time.Time{}, false, nil
	}
	mail, box, err := model.ParseReceiveContent(row.Content)
	if err != nil {
		return time.Time{}, false, nil // not a receive row smtpd wrote
	}
	conf, err := e.mailboxConfig(ctx, box)
	if err != nil {
		return time.Time{}, false, err
	}
	if (len(conf.rules) == 0 || e.cfg.SMS == nil) && (len(conf.forwards) == 0 || e.cfg.Relay == nil) {
		return time.Time{}, false, nil
	}
	j := &job{key: key, row: row, mail: mail, box: box, address: conf.address, seen: e.seen(key, e.cfg.Now())}
	var nexts []time.Time
	if e.cfg.SMS != nil && len(conf.rules) > 0 {
		targets, err := e.smsTargets(ctx, j, conf)
		if err != nil {
			return time.Time{}, false, err
		}
		send := func(ctx context.Context, phone string) error { return e.cfg.SMS.Send(ctx, phone, targets[phone]) }
		next, err := e.handle(ctx, j, kindSMS, slices.Sorted(mapKeys(targets)), e.cfg.SMS.Name(), send)
		if err != nil {
			return time.Time{}, false, err
		}
		if !next.IsZero() {
			nexts = append(nexts, next)
		}
	}
	if e.cfg.Relay != nil && len(conf.forwards) > 0 {
		var raw []byte
		send := func(ctx context.Context, to string) error {
			if raw == nil {
				m, err := mailbox.New(e.cfg.DB).Fetch(ctx, mailbox.Message{Receive: key, Mail: mail, Mailbox: box, State: j.row.State}, nil)
				if err != nil {
					return &mailReadError{err: err}
				}
				if raw, err = markForwarded(m, conf.address); err != nil {
					return err
				}
			}
			return e.cfg.Relay.Send(ctx, to, raw)
		}
		next, err := e.handle(ctx, j, kindForward, conf.forwards, "relay", send)
		if err != nil {
			return time.Time{}, false, err
		}
		if !next.IsZero() {
			nexts = append(nexts, next)
		}
	}
	if len(nexts) == 0 {
		return time.Time{}, false, nil
	}
	return slices.MinFunc(nexts, time.Time.Compare), true, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// handle runs the claim protocol of one kind for one row and sends to the
// targets not yet confirmed. It returns when to look again (zero: not
// unless the row changes).
func (e *Engine) handle(ctx context.Context, j *job, k kind, targets []string, gw string, send func(context.Context, string) error) (time.Time, error) {
	m := e.cfg.Metrics
	if len(targets) == 0 {
		m.Decisions.WithLabelValues(k.label, "nomatch").Inc()
		return time.Time{}, nil
	}
	now := e.cfg.Now()
	st := j.row.State
	cur := st.Col(k.claimCol())
	seen, fresh := e.claimSeen(j.key, k, cur, now)
	d := claim.Decide(claim.Input{Me: e.cfg.Site, Now: now, FirstSeen: j.seen, Claim: cur, ClaimSeen: seen,
		Done: done(st, k, targets), PeerDelay: e.cfg.PeerDelay, Timeout: e.cfg.ClaimTimeout})
	m.Decisions.WithLabelValues(k.label, d.Action.String()).Inc()
	if d.Future && fresh {
		// Once per claim value: the other site refreshes with a new one
		// while it is alive, and then it is logged again.
		at, _, _ := claim.Decode(cur)
		e.log.Warn("the other site's claim is stamped ahead of this clock by more than the claim timeout; its age counts from now",
			"kind", k.label, "receive", j.key, "owner", d.Owner, "stamped", at, "ahead", at.Sub(now).Round(time.Second))
	}
	switch d.Action {
	case claim.Done:
		return time.Time{}, nil
	case claim.Wait:
		return d.Until, nil
	}
	rk := retryKey{j.key, k.label}
	e.mu.Lock()
	at := e.retryAt[rk]
	e.mu.Unlock()
	if at.After(now) {
		return at, nil
	}
	ref := wire.Ref{ByKey: true, Key: j.key}
	if lost, err := e.writeClaim(ctx, j, k, now); err != nil || lost {
		return now, err // lost: decide again, the other site's claim is newer
	}
	claimed := now
	if d.Action == claim.TakeOver {
		m.TakenOver.WithLabelValues(k.label).Inc()
		e.log.Info("took over a claim", "kind", k.label, "receive", j.key, "from", d.Owner)
	}
	// Every target gets its attempt, whatever the others do: a number the
	// gateway refuses (or an address the relay refuses) must not keep
	// the SMS or copy from the others, nor have them given up with it.
	var fails []targetErr
	var held time.Time // earliest time a rate-limited number may be sent to
	for _, t := range targets {
		if finished(j.row.State, k, t) {
			continue
		}
		// Sends to many targets through a slow gateway or relay may
		// take longer than the claim lives: refresh it on the way, as
		// a retrying owner does, so the other site does not take over
		// (and send again) while this one is still sending.
		if at := e.cfg.Now(); at.Sub(claimed) >= e.cfg.ClaimTimeout/3 {
			if lost, err := e.writeClaim(ctx, j, k, at); err != nil || lost {
				if err == nil && len(fails) > 0 {
					e.log.Warn("attempt failed; the other site has the claim now", "kind", k.label, "receive", j.key, "err", joinFails(fails))
				}
				return at, err
			}
			claimed = at
		}
		if k == kindSMS && e.cfg.Limit != nil {
			if ok, at := e.cfg.Limit.Reserve(t, now); !ok {
				m.RateLimited.Inc()
				if held.IsZero() || at.Before(held) {
					held = at
				}
				continue
			}
		}
		start := time.Now()
		err := send(ctx, t)
		if re := (*mailReadError)(nil); errors.As(err, &re) {
			// The mail is not here (its header or body has not
			// replicated, e.g. to the site that took over) or dbd
			// failed: no fault of the address, so it must not count a
			// try or give the address up for good; process backs off
			// and looks again, as for any missing mail row (§1).
			return time.Time{}, err
		}
		result := "ok"
		if err != nil {
			result = "error"
		}
		m.Gateway.WithLabelValues(gw, result).Observe(time.Since(start).Seconds())
		if err != nil {
			if k == kindSMS && e.cfg.Limit != nil {
				e.cfg.Limit.Release(t)
			}
			if ctx.Err() != nil {
				return time.Time{}, ctx.Err()
			}
			if permanent(err) {
				// Refused for good (a relay's 5xx to RCPT TO or DATA, a
				// gateway's 4xx that blames the request): another try
				// gets the same answer, so end this target now.
				if err := e.giveUp(ctx, j, k, []targetErr{{to: t, err: err}}); err != nil {
					return time.Time{}, err
				}
				continue
			}
			fails = append(fails, targetErr{to: t, err: err})
			continue
		}
		if _, err := e.cfg.DB.Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: ref,
			Name: k.doneCol(t), Value: claim.Value(e.cfg.Now(), e.cfg.Site)}}); err != nil {
			// Sent but not confirmed: the next look sends again. The
			// client already retried the write; say so loudly.
			e.log.Error("sent but could not confirm; it may be sent again", "kind", k.label, "receive", j.key, "err", err)
			return time.Time{}, fmt.Errorf("confirm %s: %w", k.label, err)
		}
		m.Sent.WithLabelValues(k.label).Inc()
		e.log.Info("sent", "kind", k.label, "receive", j.key, "mailbox", j.address, "site", e.cfg.Site)
	}
	next := time.Time{}
	if !held.IsZero() {
		// Look again by RetryMax at the latest, to refresh the claim
		// while held back.
		next = earliest(held, now.Add(e.cfg.RetryMax))
		// Not before then, like a failed attempt (failed below may set
		// it later): the claim this look wrote changed the row, so the
		// watch pokes it at once, and a look that wrote the claim again
		// would poke it again, a claim write per round trip until the
		// number's rate allows.
		e.mu.Lock()
		e.retryAt[rk] = next
		e.mu.Unlock()
	}
	if len(fails) > 0 {
		at, err := e.failed(ctx, j, k, fails)
		if err != nil {
			return time.Time{}, err
		}
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, nil
}

// targetErr is one target's failure in an attempt and, once counted,
// its failed attempts so far.
type targetErr struct {
	to    string
	err   error
	tries uint64
}

func joinFails(fails []targetErr) error {
	errs := make([]error, len(fails))
	for i, f := range fails {
		errs[i] = f.err
	}
	return errors.Join(errs...)
}

// markForwarded returns a forward copy of raw, the mail as delivered to
// the mailbox address: a Delivered-To field for the mailbox above it,
// as an MDA writes one (RFC 9228). A mail that already holds one for
// this mailbox came round a forward loop (a forward to an address that
// forwards back): it is not forwarded again, a permanent failure for
// this copy. Without the mark such a loop ran until smtpd's --max-hops
// refused the mail, dozens of copies later, each one's SMS rules firing.
func markForwarded(raw []byte, address string) ([]byte, error) {
	if deliveredTo(raw, address) {
		return nil, &loopError{address: address}
	}
	field := "Delivered-To: " + address + "\r\n"
	return append([]byte(field), raw...), nil
}

// deliveredTo reports whether the header section of raw has a
// Delivered-To field naming address (case-insensitively).
func deliveredTo(raw []byte, address string) bool {
	hdr := raw[:model.HeaderSectionLen(raw)]
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Delivered-To") &&
			strings.EqualFold(strings.Trim(string(bytes.TrimSpace(val)), "<>"), address) {
			return true
		}
	}
	return false
}

// loopError is a forward copy refused because the mail came round a
// forward loop (markForwarded): forwarding it again cannot help.
type loopError struct{ address string }

func (e *loopError) Error() string {
	return "forward loop: the mail was already delivered to " + e.address + " and forwarded from there"
}

// Permanent reports that the copy is given up at once.
func (e *loopError) Permanent() bool { return true }

// mailReadError is a forward copy's failure to read the mail it copies.
type mailReadError struct{ err error }

func (e *mailReadError) Error() string { return "read the mail: " + e.err.Error() }
func (e *mailReadError) Unwrap() error { return e.err }

// permanent reports whether a send error says that trying again will not
// help: it has a Permanent method that says so (relay.DeliveryError,
// gateway.StatusError).
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// retryAfter returns the wait a send error asks for before the next
// attempt (gateway.StatusError with a Retry-After); zero: none.
func retryAfter(err error) time.Duration {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfter()
	}
	return 0
}

// writeClaim writes (or refreshes) this site's claim of kind k on the row at
// now, then reads the row back into j: a newer claim of the other site
// that has replicated here wins, and lost is true.
func (e *Engine) writeClaim(ctx context.Context, j *job, k kind, now time.Time) (lost bool, err error) {
	// Above the claim this look saw: the row's claim may be stamped
	// ahead of now (a takeover of a claim from a clock that runs ahead,
	// and the refreshes of that claim), and a lower value would vanish in
	// the merge by maximum.
	v := claim.Above(j.row.State.Col(k.claimCol()), now, e.cfg.Site)
	if _, err := e.cfg.DB.Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: j.key},
		Name: k.claimCol(), Value: v}}); err != nil {
		return false, fmt.Errorf("claim %s: %w", k.label, err)
	}
	row, err := e.cfg.DB.FindMeta(ctx, model.Receive, j.key)
	if err != nil {
		return false, fmt.Errorf("read the claim back: %w", err)
	}
	j.row.State = row.State
	if _, owner, _ := claim.Decode(row.State.Col(k.claimCol())); owner != e.cfg.Site {
		e.cfg.Metrics.Decisions.WithLabelValues(k.label, "lost").Inc()
		return true, nil
	}
	return false, nil
}

// failed records an attempt in which the targets in fails failed (none
// of them for good): each target's count rises, and a target that has
// failed MaxTries times is given up. It returns when to retry the
// others (zero: every one given up).
func (e *Engine) failed(ctx context.Context, j *job, k kind, fails []targetErr) (time.Time, error) {
	st := j.row.State
	ref := wire.Ref{ByKey: true, Key: j.key}
	reqs := []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: k.triesCol(), Value: st.Col(k.triesCol()) + 1}}
	var gone, retry []targetErr
	var most uint64
	for _, f := range fails {
		f.tries = st.Col(k.tryCol(f.to)) + 1
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: k.tryCol(f.to), Value: f.tries})
		if f.tries >= uint64(e.cfg.MaxTries) {
			gone = append(gone, f)
			continue
		}
		retry = append(retry, f)
		most = max(most, f.tries)
	}
	if _, err := e.cfg.DB.Batch(ctx, reqs); err != nil {
		return time.Time{}, fmt.Errorf("record a failed %s attempt: %w", k.label, err)
	}
	if err := e.giveUp(ctx, j, k, gone); err != nil {
		return time.Time{}, err
	}
	if len(retry) == 0 {
		return time.Time{}, nil
	}
	e.cfg.Metrics.Retries.WithLabelValues(k.label).Inc()
	wait := gateway.Backoff(int(most), e.cfg.RetryMin, e.cfg.RetryMax)
	// A gateway that said when to come back (Retry-After with a 429 or
	// 503) is not asked sooner, since an earlier attempt only adds to
	// its load and gets the same answer; but the wait stays within
	// RetryMax, by which this owner must look again to refresh its
	// claim.
	for _, f := range retry {
		if ra := retryAfter(f.err); ra > wait {
			wait = min(ra, e.cfg.RetryMax)
		}
	}
	at := e.cfg.Now().Add(wait)
	e.mu.Lock()
	e.retryAt[retryKey{j.key, k.label}] = at
	e.mu.Unlock()
	e.log.Warn("attempt failed; retrying", "kind", k.label, "receive", j.key, "tries", most, "in", wait, "err", joinFails(retry))
	return at, nil
}

// giveUp marks the targets given up (after MaxTries failed attempts, or
// at once when refused for good), and logs and counts each.
func (e *Engine) giveUp(ctx context.Context, j *job, k kind, gone []targetErr) error {
	if len(gone) == 0 {
		return nil
	}
	ref := wire.Ref{ByKey: true, Key: j.key}
	v := claim.Value(e.cfg.Now(), e.cfg.Site)
	reqs := make([]wire.Request, len(gone))
	for i, g := range gone {
		reqs[i] = wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: k.goneCol(g.to), Value: v}
	}
	if _, err := e.cfg.DB.Batch(ctx, reqs); err != nil {
		return fmt.Errorf("give up %s: %w", k.label, err)
	}
	for _, g := range gone {
		e.cfg.Metrics.Failed.WithLabelValues(k.label).Inc()
		if g.tries == 0 {
			e.log.Error("giving up: refused for good", "kind", k.label, "receive", j.key, "mailbox", j.address, "to", g.to, "err", g.err)
		} else {
			e.log.Error("giving up", "kind", k.label, "receive", j.key, "mailbox", j.address, "to", g.to, "tries", g.tries, "err", g.err)
		}
	}
	return nil
}

// done reports whether the row needs nothing more of kind k: every target
// confirmed or given up. A row an older smsd gave up as a whole (the
// kind's failed column) stays given up.
func done(st model.State, k kind, targets []string) bool {
	if st.Col(k.failedCol()) != 0 {
		return true
	}
	for _, t := range targets {
		if !finished(st, k, t) {
			return false
		}
	}
	return true
}

// finished reports whether target t needs nothing more: confirmed or
// given up.
func finished(st model.State, k kind, t string) bool {
	return st.Col(k.doneCol(t)) != 0 || st.Col(k.goneCol(t)) != 0
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
