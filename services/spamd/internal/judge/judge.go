package judge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
	"github.com/twinmx/twinmx/services/spamd/internal/external"
	"github.com/twinmx/twinmx/services/spamd/internal/sender"
	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// DB is what the judge needs of a dbd client; *client.Client implements it.
type DB interface {
	Watch(ctx context.Context, t model.Table, keys []model.Key, initial bool) (*client.Stream, error)
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	ScanKeys(ctx context.Context, t model.Table, limit int) ([]model.Key, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var _ DB = (*client.Client)(nil)

// Authenticator checks SPF, DKIM and DMARC (msgauth.Checker).
type Authenticator interface {
	Check(ctx context.Context, env signal.Envelope, raw []byte) signal.Auth
}

// Engine is an external engine the operator already runs (package
// external: SpamAssassin, rspamd). Its error means "no opinion".
type Engine interface {
	Check(ctx context.Context, env signal.Envelope, raw []byte) (external.Result, error)
}

// Digests is the rejection digest's part in judging (package digest): it
// recognises spamd's own digests and applies the replies that allow
// senders. Both come before every other signal.
type Digests interface {
	// IsReplyAddress reports whether mailbox is the digest's allow address.
	IsReplyAddress(mailbox string) bool
	// Own reports whether raw is a digest spamd made for mailbox.
	Own(ctx context.Context, mailbox string, raw []byte) (bool, error)
	// Reply applies the allow tokens of raw, a mail to the allow address
	// attempted at t, and returns how many senders it allowed.
	Reply(ctx context.Context, raw []byte, t time.Time) (int, error)
}

// ConfigMails is configuration by e-mail (package confmail): mail to the
// config address is applied or refused by it, and its confirmations are
// recognised. Both come before every other signal, like the digest's.
type ConfigMails interface {
	// IsConfigAddress reports whether mailbox is the config address.
	IsConfigAddress(mailbox string) bool
	// Apply authenticates and applies raw, a mail to the config address
	// attempted as a says, and returns whether to accept it and why. An
	// error means nothing was applied and the attempt is judged again.
	Apply(ctx context.Context, a model.Attempt, mailbox string, raw []byte) (accept bool, reason string, err error)
	// Own reports whether raw is a confirmation spamd made for mailbox.
	Own(ctx context.Context, mailbox string, raw []byte) (bool, error)
}

// Models gives the classifier model to judge with; nil means none yet.
type Models interface {
	Current() *classify.Model
}

// Config configures a Judge. Zero values mean the defaults.
type Config struct {
	DB     DB
	Models Models
	Auth   Authenticator // nil: no sender authentication signal
	Engine Engine        // nil: no external engine
	// Digests recognises digests and their replies (nil: off).
	Digests Digests
	// ConfigMails applies configuration mails (nil: mail to a config
	// address is judged like any mail).
	ConfigMails ConfigMails
	// GreyDelay is how long after a first contact's Retry a retry passes
	// greylisting (default 1 minute; negative: greylisting off).
	GreyDelay time.Duration
	// Backlog is how many of the newest throw-ins are judged at start
	// (default 2000).
	Backlog int
	// Workers judge attempts concurrently (default 4): DNS lookups wait.
	Workers int
	Logger  *slog.Logger
	Metrics *Metrics
}

func (c *Config) applyDefaults() {
	if c.GreyDelay == 0 {
		c.GreyDelay = time.Minute
	}
	if c.Backlog == 0 {
		c.Backlog = 2000
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
}

// Judge decides receive rows as their delivery attempts arrive.
type Judge struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	done map[model.Key]struct{} // throw-ins judged (bounded, see remember)
}

// New returns a Judge.
func New(cfg Config) *Judge {
	cfg.applyDefaults()
	return &Judge{cfg: cfg, log: cfg.Logger, done: make(map[model.Key]struct{})}
}

// Run judges until ctx ends: it subscribes to the throw-in table, judges
// the backlog, then every new attempt. A broken stream (dbd restarted, the
// watcher fell behind) is re-subscribed after a pause, and the backlog read
// again, so nothing is missed.
func (j *Judge) Run(ctx context.Context) error {
	client.Resubscribe(ctx, time.Second, j.runOnce, func(err error) {
		j.cfg.Metrics.Errors.WithLabelValues("watch").Inc()
		j.log.Warn("throw-in watch ended; subscribing again", "err", err)
	})
	return nil
}

func (j *Judge) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := j.cfg.DB.Watch(ctx, model.ThrowIn, nil, false)
	if err != nil {
		return fmt.Errorf("watch throw-in: %w", err)
	}
	defer st.Close()
	work := make(chan model.Key, 256)
	var wg sync.WaitGroup
	for range j.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				j.attempt(ctx, k)
			}
		}()
	}
	defer wg.Wait()
	defer close(work)
	backlog, err := j.cfg.DB.ScanKeys(ctx, model.ThrowIn, j.cfg.Backlog)
	if err != nil {
		return fmt.Errorf("read the backlog: %w", err)
	}
	// Oldest first: a retry must be judged after its first attempt.
	for i := len(backlog) - 1; i >= 0; i-- {
		select {
		case work <- backlog[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		row, err := st.Next(ctx)
		if err != nil {
			return err
		}
		select {
		case work <- row.Key:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maxRemembered bounds the set of judged throw-ins; when full it is
// cleared (a throw-in judged twice costs reads, never a different answer).
const maxRemembered = 100000

func (j *Judge) remember(k model.Key) (seen bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.done[k]; ok {
		return true
	}
	if len(j.done) >= maxRemembered {
		clear(j.done)
	}
	j.done[k] = struct{}{}
	return false
}

func (j *Judge) forget(k model.Key) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.done, k)
}

// attempt judges every recipient of one throw-in. A failure leaves the
// throw-in to be judged again by the next backlog pass or retry.
func (j *Judge) attempt(ctx context.Context, key model.Key) {
	if j.remember(key) {
		return
	}
	if err := j.judgeAttempt(ctx, key); err != nil {
		j.forget(key)
		if ctx.Err() == nil {
			j.cfg.Metrics.Errors.WithLabelValues("judge").Inc()
			j.log.Warn("judging an attempt failed", "throw-in", key, "err", err)
		}
	}
}

func (j *Judge) judgeAttempt(ctx context.Context, key model.Key) error {
	row, err := j.cfg.DB.FindKey(ctx, model.ThrowIn, key)
	if err != nil {
		return fmt.Errorf("read throw-in: %w", err)
	}
	a, err := model.ParseThrowIn(row.Content)
	if err != nil {
		// Not ours to judge (an unknown record): nothing to retry.
		j.log.Debug("skipping a throw-in", "key", key, "err", err)
		return nil
	}
	if !a.HasMail {
		return nil // the attempt never got to DATA
	}
	var raw []byte
	for _, rcpt := range a.Rcpts {
		if err := j.judgeRecipient(ctx, a, rcpt, &raw); err != nil {
			return fmt.Errorf("rcpt %s: %w", rcpt, err)
		}
	}
	return nil
}

func (j *Judge) judgeRecipient(ctx context.Context, a model.Attempt, rcpt string, raw *[]byte) error {
	mbContent := model.MailboxContent(rcpt)
	rk := model.KeyOf(model.Receive, model.ReceiveContent(a.Mail, model.KeyOf(model.Mailbox, mbContent)))
	rrow, err := j.cfg.DB.FindKey(ctx, model.Receive, rk)
	if errors.Is(err, client.ErrNotFound) {
		return nil // not stored (yet): the attempt's batch failed
	}
	if err != nil {
		return fmt.Errorf("read receive row: %w", err)
	}
	epoch := model.Epoch(a.Time)
	grey := decide.GreyOff
	if j.cfg.GreyDelay > 0 {
		grey = decide.GreyFirst
	}
	retried, askedAt := false, uint32(0) // an earlier attempt was asked to retry, at askedAt
	if x := rrow.State.Col(model.ColVerdict); x != 0 {
		src, vEpoch, v, ok := model.DecodeVerdict(x)
		switch {
		case !ok || src != model.SourceFilter:
			return nil // an operator decided: final
		case v != model.Retry || vEpoch >= epoch:
			return nil // decided for this attempt or finally
		}
		retried, askedAt = true, vEpoch
	}
	policy, err := j.policy(ctx, mbContent)
	if err != nil {
		return err
	}
	if policy != model.PolicyFilter {
		// No greylisting for this mailbox (any more): Decide knows.
		retried = false
	}
	tooEarly := false
	if retried {
		first := time.Unix(int64(askedAt), 0)
		// The mail's first contact, kept with it: askedAt is only the
		// latest Retry, and a retry from another network or with another
		// sender tag finds no grey row of the first contact's triplet.
		if inv := rrow.State.Col(colFirstAsked); inv > 0 && inv <= math.MaxUint32 {
			if f := time.Unix(int64(math.MaxUint32-inv), 0); f.Before(first) {
				first = f
			}
		}
		if f, ok, err := j.greyFirst(ctx, a, string(mbContent)); err != nil {
			return err
		} else if ok && f.Before(first) {
			first = f
		}
		if j.cfg.GreyDelay > 0 && a.Time.Sub(first) < j.cfg.GreyDelay {
			// Came back too soon: asked again below, unless a list or a
			// known correspondent decides before greylisting.
			tooEarly = true
		} else {
			grey = decide.GreyPassed
		}
	}
	sd, special, err := j.digestDecision(ctx, a, string(mbContent), raw)
	if err == nil && !special {
		sd, special, err = j.configDecision(ctx, a, string(mbContent), raw)
	}
	if err != nil || special {
		if err != nil {
			return err
		}
		if err := j.write(ctx, rk, a, string(mbContent), sd, false); err != nil {
			return err
		}
		j.cfg.Metrics.Decisions.WithLabelValues(sd.Verdict.String()).Inc()
		j.log.Info("judged", "mail", a.Mail, "rcpt", rcpt, "verdict", sd.Verdict, "reason", sd.Reason)
		return nil
	}
	// A triplet passed only under its legacy key (the raw sender) is
	// marked passed under its key too, with this verdict.
	migrate := false
	if grey == decide.GreyFirst && policy == model.PolicyFilter && !tooEarly {
		rows, err := j.greyRows(ctx, a, string(mbContent))
		if err != nil {
			return err
		}
		for i, g := range rows {
			if g != nil && g.State.Col(colPassed) > 0 {
				grey, migrate = decide.GreyOff, i > 0
				break
			}
		}
	}
	if *raw == nil {
		if *raw, err = j.readMail(ctx, a.Mail); err != nil {
			return err
		}
	}
	in := decide.Input{Raw: *raw, Grey: grey, Policy: policy,
		Env: signal.Envelope{ClientIP: a.ClientIP(), Helo: a.Helo, From: a.From, Rcpt: string(mbContent)}}
	if in.List, in.ListWhat, err = j.list(ctx, string(mbContent), a.From); err != nil {
		return err
	}
	if in.List == decide.ListNone && a.From != "" {
		if in.Known, err = j.known(ctx, string(mbContent), a.From); err != nil {
			return err
		}
	}
	if tooEarly && in.List == decide.ListNone && !in.Known {
		// Ask again, at this attempt's epoch so smtpd answers now
		// instead of waiting out its window. The delay still counts
		// from the first contact.
		return j.write(ctx, rk, a, string(mbContent), decide.Decision{Verdict: model.Retry, Score: 0.5,
			Reason: "greylisted: retried before the greylisting delay"}, false)
	}
	if j.cfg.Auth != nil && in.List == decide.ListNone && !in.Known {
		auth := j.cfg.Auth.Check(ctx, in.Env, *raw)
		in.Auth = &auth
	}
	if j.cfg.Engine != nil && in.List == decide.ListNone && !in.Known {
		if r, err := j.cfg.Engine.Check(ctx, in.Env, *raw); err == nil {
			in.External = &decide.External{Engine: r.Engine, Score: r.Score, Threshold: r.Threshold}
		} else {
			j.cfg.Metrics.Errors.WithLabelValues("external").Inc()
			j.log.Debug("external engine gave no opinion", "err", err)
		}
	}
	start := time.Now()
	d := decide.Decide(j.cfg.Models.Current(), in)
	j.cfg.Metrics.DecideSeconds.Observe(time.Since(start).Seconds())
	if err := j.write(ctx, rk, a, string(mbContent), d, grey == decide.GreyPassed || migrate); err != nil {
		return err
	}
	j.cfg.Metrics.Decisions.WithLabelValues(d.Verdict.String()).Inc()
	j.log.Info("judged", "mail", a.Mail, "rcpt", rcpt, "verdict", d.Verdict, "score", d.Score, "reason", d.Reason)
	return nil
}

// digestDecision decides spamd's own mail before every other signal: a
// reply to the digest's allow address is accepted when it allowed a
// sender and refused when it held no valid token (the user's mail program
// then says so); a digest whose MAC verifies is accepted. ok is false for
// any other mail.
func (j *Judge) digestDecision(ctx context.Context, a model.Attempt, mailbox string, raw *[]byte) (decide.Decision, bool, error) {
	dg := j.cfg.Digests
	if dg == nil {
		return decide.Decision{}, false, nil
	}
	var err error
	if *raw == nil {
		if *raw, err = j.readMail(ctx, a.Mail); err != nil {
			return decide.Decision{}, false, err
		}
	}
	if dg.IsReplyAddress(mailbox) {
		n, err := dg.Reply(ctx, *raw, a.Time)
		switch {
		case err != nil:
			return decide.Decision{}, false, fmt.Errorf("digest reply: %w", err)
		case n == 0:
			return decide.Decision{Verdict: model.Reject, Score: 1, Reason: "allow-by-reply: no valid ALLOW token"}, true, nil
		}
		return decide.Decision{Verdict: model.Accept, Reason: fmt.Sprintf("allow-by-reply processed: %d senders", n)}, true, nil
	}
	own, err := dg.Own(ctx, mailbox, *raw)
	if err != nil || !own {
		return decide.Decision{}, false, err
	}
	return decide.Decision{Verdict: model.Accept, Reason: "twinmx rejection digest (X-Twinmx-Digest verified)"}, true, nil
}

// configDecision decides configuration mail before every other signal:
// mail to the config address is applied and accepted, or refused (550)
// when its sender is not an authenticated admin or configuration by
// e-mail is off; a confirmation whose MAC verifies is accepted. ok is
// false for any other mail.
func (j *Judge) configDecision(ctx context.Context, a model.Attempt, mailbox string, raw *[]byte) (decide.Decision, bool, error) {
	cm := j.cfg.ConfigMails
	if cm == nil {
		return decide.Decision{}, false, nil
	}
	var err error
	if *raw == nil {
		if *raw, err = j.readMail(ctx, a.Mail); err != nil {
			return decide.Decision{}, false, err
		}
	}
	if cm.IsConfigAddress(mailbox) {
		accept, reason, err := cm.Apply(ctx, a, mailbox, *raw)
		switch {
		case err != nil:
			return decide.Decision{}, false, fmt.Errorf("config mail: %w", err)
		case !accept:
			return decide.Decision{Verdict: model.Reject, Score: 1, Reason: reason}, true, nil
		}
		return decide.Decision{Verdict: model.Accept, Reason: reason}, true, nil
	}
	own, err := cm.Own(ctx, mailbox, *raw)
	if err != nil || !own {
		return decide.Decision{}, false, err
	}
	return decide.Decision{Verdict: model.Accept, Reason: "twinmx configuration confirmation (X-Twinmx-Config verified)"}, true, nil
}

// write stores the decision in one atomic batch: reason row and link,
// score, the known-correspondent and greylisting marks, and the verdict.
func (j *Judge) write(ctx context.Context, rk model.Key, a model.Attempt, mailbox string, d decide.Decision, passed bool) error {
	ref := wire.Ref{ByKey: true, Key: rk}
	reason := model.ReasonContent(rk, d.Verdict, d.Score, d.Reason)
	ms := uint64(max(a.Time.UnixMilli(), 1))
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: reason},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReasonColumn(model.KeyOf(model.Text, reason)), Value: ms},
	}
	if d.Verdict != model.Retry {
		// spam.score only rises (max-merge), so a Retry's score would
		// outlive the lower score of the definite verdict that replaces
		// it. A Retry's score is in its reason row.
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: colScore, Value: uint64(math.Round(min(max(d.Score, 0), 1) * 1e6))})
	} else {
		// The mail's first contact, as the maximum of its inverse: its
		// retries may come from other networks or sender tags, whose
		// grey rows do not hold it.
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: colFirstAsked, Value: math.MaxUint32 - uint64(model.Epoch(a.Time))})
	}
	if g := greyContent(Network(a.ClientIP()), sender.Normalize(a.From), mailbox); passed {
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.RDNS, Content: g},
			wire.Request{Op: wire.OpSet, Table: model.RDNS, Ref: wire.Ref{Content: g}, Name: colPassed, Value: uint64(a.Time.Unix())})
	} else if d.Verdict == model.Retry {
		// The first contact's time, as the maximum of its inverse: the
		// column only rises, so the earliest attempt on any site wins.
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.RDNS, Content: g},
			wire.Request{Op: wire.OpSet, Table: model.RDNS, Ref: wire.Ref{Content: g}, Name: colFirstInv, Value: math.MaxUint32 - uint64(model.Epoch(a.Time))})
	}
	if d.Verdict == model.Accept && d.Score < decide.ClearHam && a.From != "" {
		k := knownContent(mailbox, sender.Normalize(a.From))
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: k},
			wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: k}, Name: colKnown, Value: ms})
	}
	reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColVerdict,
		Value: model.EncodeVerdict(model.SourceFilter, model.Epoch(a.Time), d.Verdict)})
	if _, err := j.cfg.DB.Batch(ctx, reqs); err != nil {
		return fmt.Errorf("write verdict: %w", err)
	}
	return nil
}

// policy reads the mailbox's spam policy. A mailbox that is gone reads as
// the full check, as does a policy this version does not know.
func (j *Judge) policy(ctx context.Context, mailbox []byte) (model.Policy, error) {
	row, err := j.cfg.DB.FindKey(ctx, model.Mailbox, model.KeyOf(model.Mailbox, mailbox))
	if errors.Is(err, client.ErrNotFound) {
		return model.PolicyFilter, nil
	}
	if err != nil {
		return model.PolicyFilter, fmt.Errorf("read mailbox: %w", err)
	}
	p, known := model.PolicyOf(row.State.Col(model.ColPolicy))
	if !known {
		j.log.Warn("unknown spam policy, judging with the full check", "mailbox", string(mailbox))
	}
	return p, nil
}

// greyFirst returns the first contact's time recorded for the attempt's
// greylisting triplet: the earliest under its key and its legacy key.
func (j *Judge) greyFirst(ctx context.Context, a model.Attempt, mailbox string) (time.Time, bool, error) {
	rows, err := j.greyRows(ctx, a, mailbox)
	if err != nil {
		return time.Time{}, false, err
	}
	inv := uint64(0)
	for _, g := range rows {
		if g != nil && g.State.Col(colFirstInv) <= math.MaxUint32 {
			inv = max(inv, g.State.Col(colFirstInv))
		}
	}
	if inv == 0 {
		return time.Time{}, false, nil
	}
	return time.Unix(int64(math.MaxUint32-inv), 0), true, nil
}

// greyRows reads the attempt's greylisting rows, one per senderKeys form
// (the normalised sender, then the raw one written before 2026-12-03);
// nil where a row does not exist.
func (j *Judge) greyRows(ctx context.Context, a model.Attempt, mailbox string) ([]*wire.Row, error) {
	keys := senderKeys(a.From)
	rows := make([]*wire.Row, len(keys))
	for i, s := range keys {
		g, err := j.cfg.DB.FindKey(ctx, model.RDNS, model.KeyOf(model.RDNS, greyContent(Network(a.ClientIP()), s, mailbox)))
		switch {
		case err == nil:
			rows[i] = g
		case !errors.Is(err, client.ErrNotFound):
			return nil, fmt.Errorf("read greylisting row: %w", err)
		}
	}
	return rows, nil
}

// known reports whether mailbox accepted clear mail from the sender: a
// known row under the normalised sender, else under the raw one (legacy).
// A legacy hit accepts the mail, and accepting writes the normalised row.
func (j *Judge) known(ctx context.Context, mailbox, from string) (bool, error) {
	for _, s := range senderKeys(from) {
		k, err := j.cfg.DB.FindKey(ctx, model.Text, model.KeyOf(model.Text, knownContent(mailbox, s)))
		switch {
		case err == nil && k.State.Col(colKnown) > 0:
			return true, nil
		case err != nil && !errors.Is(err, client.ErrNotFound):
			return false, fmt.Errorf("read known correspondent: %w", err)
		}
	}
	return false, nil
}

// list looks the sender up in the mailbox's lists (listCandidates): the
// envelope address's own entry decides; else a block entry of any other
// form wins over an allow entry, so matching the normalised sender never
// turns a block into an allow.
func (j *Judge) list(ctx context.Context, mailbox, from string) (decide.ListMatch, string, error) {
	if from == "" {
		return decide.ListNone, "", nil
	}
	match, what := decide.ListNone, ""
	for i, c := range listCandidates(from) {
		row, err := j.cfg.DB.FindKey(ctx, model.Text, model.KeyOf(model.Text, ListContent(mailbox, c)))
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return decide.ListNone, "", fmt.Errorf("read list: %w", err)
		}
		switch row.State.Col(colList) & 3 {
		case ListAllow:
			if i == 0 {
				return decide.ListAllow, "sender " + c, nil
			}
			if match == decide.ListNone {
				match, what = decide.ListAllow, "sender "+c
			}
		case ListBlock:
			return decide.ListBlock, "sender " + c, nil
		}
	}
	return match, what, nil
}

// readMail rebuilds the mail as stored, without Received fields (they are
// the delivery's, not the content's).
func (j *Judge) readMail(ctx context.Context, mail model.Key) ([]byte, error) {
	m, err := j.cfg.DB.FindKey(ctx, model.Mail, mail)
	if err != nil {
		return nil, fmt.Errorf("read mail: %w", err)
	}
	hk, bk, err := model.ParseMailContent(m.Content)
	if err != nil {
		return nil, fmt.Errorf("mail %s: %w", mail, err)
	}
	h, err := j.cfg.DB.FindKey(ctx, model.Header, hk)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	b, err := j.cfg.DB.FindKey(ctx, model.Body, bk)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return model.Join(model.Parts{Header: h.Content, Body: b.Content})
}
