package notify

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Relay delivers a forward copy (relay.Relay).
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
// PREFIX.claim (claim.Value), PREFIX.s.<hash of target> (confirmation,
// claim.Value), PREFIX.tries (failed attempts) and PREFIX.failed (given
// up, claim.Value).
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

// doneCol is the confirmation column of one target (phone number or
// address): the first 80 bits of its SHA-256, base32.
func (k kind) doneCol(target string) string {
	h := sha256.Sum256([]byte(target))
	return k.prefix + "s." + hashEnc.EncodeToString(h[:10])
}

// Engine finds acknowledged, accepted mail and sends what the mailboxes'
// rules ask for, once for both sites. Create it with New and call Run.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	sched *scheduler

	mu        sync.Mutex
	firstSeen map[model.Key]time.Time // rows waiting here: when first seen ready
	retryAt   map[retryKey]time.Time
	texts     map[model.Key][]byte // text row contents (immutable) by key
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
		retryAt: map[retryKey]time.Time{}, texts: map[model.Key][]byte{}}
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
		e.cfg.Metrics.Errors.WithLabelValues("process").Inc()
		e.log.Warn("looking at a receive row failed; trying again", "receive", key, "err", err)
		return e.cfg.Now().Add(e.cfg.RetryMin), true
	}
	if !again {
		e.forget(key)
	}
	return next, again
}

func (e *Engine) forget(key model.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.firstSeen, key)
	delete(e.retryAt, retryKey{key, kindSMS.label})
	delete(e.retryAt, retryKey{key, kindForward.label})
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
				if raw, err = mailbox.New(e.cfg.DB).Fetch(ctx, mailbox.Message{Receive: key, Mail: mail, Mailbox: box, State: j.row.State}, nil); err != nil {
					return fmt.Errorf("read the mail: %w", err)
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
	d := claim.Decide(claim.Input{Me: e.cfg.Site, Now: now, FirstSeen: j.seen, Claim: st.Col(k.claimCol()),
		Done: done(st, k, targets), PeerDelay: e.cfg.PeerDelay, Timeout: e.cfg.ClaimTimeout})
	m.Decisions.WithLabelValues(k.label, d.Action.String()).Inc()
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
	// The attempt counts once however many targets failed.
	var errs []error
	var held time.Time // earliest time a rate-limited number may be sent to
	for _, t := range targets {
		if j.row.State.Col(k.doneCol(t)) != 0 {
			continue
		}
		// Sends to many targets through a slow gateway or relay may
		// take longer than the claim lives: refresh it on the way, as
		// a retrying owner does, so the other site does not take over
		// (and send again) while this one is still sending.
		if at := e.cfg.Now(); at.Sub(claimed) >= e.cfg.ClaimTimeout/3 {
			if lost, err := e.writeClaim(ctx, j, k, at); err != nil || lost {
				if err == nil && len(errs) > 0 {
					e.log.Warn("attempt failed; the other site has the claim now", "kind", k.label, "receive", j.key, "err", errors.Join(errs...))
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
			errs = append(errs, err)
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
	}
	if len(errs) > 0 {
		at, err := e.failed(ctx, j, k, errors.Join(errs...))
		if err != nil || at.IsZero() {
			return at, err // given up: nothing more for this kind
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}

// writeClaim writes (or refreshes) this site's claim of kind k on the row at
// now, then reads the row back into j: a newer claim of the other site
// that has replicated here wins, and lost is true.
func (e *Engine) writeClaim(ctx context.Context, j *job, k kind, now time.Time) (lost bool, err error) {
	if _, err := e.cfg.DB.Batch(ctx, []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: j.key},
		Name: k.claimCol(), Value: claim.Value(now, e.cfg.Site)}}); err != nil {
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

// failed records a failed attempt: a retry after the backoff, or the row
// given up after MaxTries.
func (e *Engine) failed(ctx context.Context, j *job, k kind, sendErr error) (time.Time, error) {
	tries := j.row.State.Col(k.triesCol()) + 1
	ref := wire.Ref{ByKey: true, Key: j.key}
	reqs := []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: k.triesCol(), Value: tries}}
	giveUp := tries >= uint64(e.cfg.MaxTries)
	if giveUp {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: k.failedCol(), Value: claim.Value(e.cfg.Now(), e.cfg.Site)})
	}
	if _, err := e.cfg.DB.Batch(ctx, reqs); err != nil {
		return time.Time{}, fmt.Errorf("record a failed %s attempt: %w", k.label, err)
	}
	if giveUp {
		e.cfg.Metrics.Failed.WithLabelValues(k.label).Inc()
		e.log.Error("giving up", "kind", k.label, "receive", j.key, "mailbox", j.address, "tries", tries, "err", sendErr)
		return time.Time{}, nil
	}
	e.cfg.Metrics.Retries.WithLabelValues(k.label).Inc()
	wait := gateway.Backoff(int(tries), e.cfg.RetryMin, e.cfg.RetryMax)
	at := e.cfg.Now().Add(wait)
	e.mu.Lock()
	e.retryAt[retryKey{j.key, k.label}] = at
	e.mu.Unlock()
	e.log.Warn("attempt failed; retrying", "kind", k.label, "receive", j.key, "tries", tries, "in", wait, "err", sendErr)
	return at, nil
}

// done reports whether the row needs nothing more of kind k: every target
// confirmed, or given up.
func done(st model.State, k kind, targets []string) bool {
	if st.Col(k.failedCol()) != 0 {
		return true
	}
	for _, t := range targets {
		if st.Col(k.doneCol(t)) == 0 {
			return false
		}
	}
	return true
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
