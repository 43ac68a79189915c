// Package feedback applies users' spam feedback to spamd's live model
// (SPEC §7; docs/imapd.md §4): when a user moves a mail into Junk, imapd
// writes a feedback row saying "spam", and moving it out says "ham". The
// Learner lists every feedback row (dbd's parent index:
// model.FeedbackParent), then follows new ones with a watch by parent,
// and teaches the live model the mail's raw content (header and body, as
// the judge reads it) as that class.
//
// # Idempotence
//
// The Learner remembers, per mail, the class it has taught the current
// model. A feedback row seen again (a replay after a broken watch, a
// restart that lists everything) changes nothing; a mail whose latest
// feedback flips is unlearnt from its old class and learnt as the new
// one. Several users' rows about one mail count once: the latest verdict
// (the highest model.ColFeedback value) is the mail's class. When a new
// model is pushed (modelstore.Live swaps it), nothing was taught to it
// yet: the Learner forgets its record and teaches it every feedback again.
//
// # Several instances
//
// Each spamd instance (both sites may run one) keeps its own live model
// in memory and applies the feedback it sees. While rows stream in and
// replicate, two instances may differ by the feedback one has seen and
// the other not yet, and judge a mail differently. That is harmless: the
// verdict is a receive row column, and "higher dominates" (at the same
// source and epoch, accept outranks reject) decides one answer on both
// sites. Once every instance has seen the same rows, their counts are
// equal, since each mail counts once in its latest class.
//
// # Concurrency
//
// Run owns two goroutines (itself and a watch reader) and returns when
// ctx ends; the record is touched by Run's goroutine only.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
)

// DB is what the Learner needs of a dbd client; *client.Client
// implements it.
type DB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	List(ctx context.Context, t model.Table, parent model.Key, after uint64, limit int) ([]wire.Row, error)
	WatchChildren(ctx context.Context, t model.Table, parent model.Key) (*client.Stream, error)
}

var _ DB = (*client.Client)(nil)

// Models gives the model to teach; *modelstore.Live implements it.
type Models interface {
	Current() *classify.Model
}

// Config configures a Learner. Zero values mean the defaults.
type Config struct {
	DB     DB           // required
	Models Models       // required
	Logger *slog.Logger // default: discard
	// Retry is the pause before a broken watch is opened again. Default 2s.
	Retry time.Duration
	// Check is how often the Learner looks for a newly pushed model to
	// teach again. Default 30s.
	Check time.Duration
}

// Learner applies feedback rows to the live model. Create it with New.
type Learner struct {
	cfg Config

	model   *classify.Model              // the model `taught` describes
	stale   bool                         // model may lack feedback in best: teach it all (checkModel)
	best    map[model.Key]uint64         // mail key -> highest feedback value seen
	taught  map[model.Key]classify.Class // mail key -> class taught to model
	mailOf  map[model.Key]model.Key      // receive key -> mail key (immutable)
	pending map[model.Key]struct{}       // feedback rows whose mail is not here yet
	applied int                          // learn/unlearn steps, for tests and logs
}

// maxPending bounds the feedback rows waiting for their mail to replicate.
const maxPending = 100000

// New returns a Learner.
func New(cfg Config) *Learner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Check <= 0 {
		cfg.Check = 30 * time.Second
	}
	return &Learner{cfg: cfg, best: map[model.Key]uint64{}, taught: map[model.Key]classify.Class{}, mailOf: map[model.Key]model.Key{}, pending: map[model.Key]struct{}{}}
}

// Run follows the feedback rows until ctx ends, subscribing again after
// errors.
func (l *Learner) Run(ctx context.Context) {
	client.Resubscribe(ctx, l.cfg.Retry, l.follow, func(err error) {
		l.cfg.Logger.Warn("feedback watch ended; subscribing again", "err", err)
	})
}

// follow subscribes, lists every feedback row (the subscription is live
// first, so nothing is missed), then applies each change.
func (l *Learner) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := l.cfg.DB.WatchChildren(ctx, model.Text, model.FeedbackParent)
	if err != nil {
		return err
	}
	defer st.Close()
	events := make(chan model.Key, 256)
	werr := make(chan error, 1)
	go func() {
		for {
			row, err := st.Next(ctx)
			if err != nil {
				werr <- err
				close(events)
				return
			}
			select {
			case events <- row.Key:
			case <-ctx.Done():
				werr <- ctx.Err()
				close(events)
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range events { // let the reader end
		}
	}()
	if err := l.catchUp(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(l.cfg.Check)
	defer tick.Stop()
	for {
		select {
		case k, ok := <-events:
			if !ok {
				return <-werr
			}
			row, err := l.cfg.DB.FindKey(ctx, model.Text, k)
			if err != nil {
				return fmt.Errorf("read feedback %s: %w", k, err)
			}
			if err := l.Apply(ctx, row); err != nil {
				return err
			}
		case <-tick.C:
			if err := l.checkModel(ctx); err != nil {
				return err
			}
			if err := l.retryPending(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUp applies every feedback row dbd holds.
func (l *Learner) catchUp(ctx context.Context) error {
	var after uint64
	for {
		rows, err := l.cfg.DB.List(ctx, model.Text, model.FeedbackParent, after, 5000)
		if err != nil {
			return err
		}
		for i := range rows {
			after = rows[i].RowNo
			if err := l.Apply(ctx, &rows[i]); err != nil {
				return err
			}
		}
		if len(rows) < 5000 {
			return nil
		}
	}
}

// retryPending applies again the feedback rows whose mail was missing.
func (l *Learner) retryPending(ctx context.Context) error {
	for k := range l.pending {
		delete(l.pending, k)
		row, err := l.cfg.DB.FindKey(ctx, model.Text, k)
		if err != nil {
			return fmt.Errorf("read feedback %s: %w", k, err)
		}
		if err := l.Apply(ctx, row); err != nil {
			return err
		}
	}
	return nil
}

// later remembers a feedback row to apply again at the next check.
func (l *Learner) later(k model.Key) {
	if len(l.pending) < maxPending {
		l.pending[k] = struct{}{}
	}
}

// checkModel teaches a newly pushed model every feedback again.
func (l *Learner) checkModel(ctx context.Context) error {
	m := l.cfg.Models.Current()
	if m != l.model {
		l.model, l.stale = m, true
		clear(l.taught)
	}
	if !l.stale || m == nil {
		return nil
	}
	// stale stays set until every mail is taught: a read error half-way
	// (which ends the watch) must not leave the rest of the feedback
	// untaught once the Learner subscribes again. teach skips what the
	// model already holds, so a second pass counts no mail twice.
	for mail := range l.best {
		if err := l.teach(ctx, mail); err != nil && !errors.Is(err, client.ErrNotFound) {
			return err
		}
	}
	l.stale = false
	l.cfg.Logger.Info("feedback taught to the new model", "mails", len(l.best))
	return nil
}

// Apply applies one feedback row (with content and state). A malformed
// row, or one about a mail that is not here (yet), is skipped.
func (l *Learner) Apply(ctx context.Context, row *wire.Row) error {
	if err := l.checkModel(ctx); err != nil {
		return err
	}
	rk, _, err := model.ParseFeedbackContent(row.Content)
	if err != nil {
		return nil
	}
	v := row.State.Col(model.ColFeedback)
	if _, ok := model.DecodeFeedback(v); !ok {
		return nil
	}
	mail, ok := l.mailOf[rk]
	if !ok {
		r, err := l.cfg.DB.FindKey(ctx, model.Receive, rk)
		if errors.Is(err, client.ErrNotFound) {
			l.later(row.Key) // the receive row has not replicated yet
			return nil
		}
		if err != nil {
			return fmt.Errorf("read receive %s: %w", rk, err)
		}
		if mail, _, err = model.ParseReceiveContent(r.Content); err != nil {
			return nil
		}
		if len(l.mailOf) < 1<<20 {
			l.mailOf[rk] = mail
		}
	}
	prev := l.best[mail]
	if v <= prev {
		return nil // seen (a replay) or older than what the mail has
	}
	l.best[mail] = v
	err = l.teach(ctx, mail)
	if err != nil {
		// Not taught: forget v, or the same row applied again (the
		// pending retry, or catchUp after the watch is opened again)
		// would look like a replay and the feedback would be lost.
		l.best[mail] = prev
	}
	if errors.Is(err, client.ErrNotFound) {
		// The mail's rows have not replicated yet.
		l.later(row.Key)
		return nil
	}
	return err
}

// teach makes the model hold mail in its latest class, once.
func (l *Learner) teach(ctx context.Context, mail model.Key) error {
	if l.model == nil {
		return nil
	}
	spam, _ := model.DecodeFeedback(l.best[mail])
	want := classify.Ham
	if spam {
		want = classify.Spam
	}
	had, ok := l.taught[mail]
	if ok && had == want {
		return nil
	}
	raw, err := readMail(ctx, l.cfg.DB, mail)
	if err != nil {
		return err
	}
	if ok {
		l.model.Unlearn(raw, had)
		l.applied++
	}
	l.model.Learn(raw, want)
	l.applied++
	l.taught[mail] = want
	l.cfg.Logger.Debug("feedback applied", "mail", mail, "spam", spam, "flipped", ok)
	return nil
}

// readMail returns a mail's header and body as the judge reads them
// (without Received fields: they differ per delivery).
func readMail(ctx context.Context, db DB, mail model.Key) ([]byte, error) {
	m, err := db.FindKey(ctx, model.Mail, mail)
	if err != nil {
		return nil, fmt.Errorf("read mail %s: %w", mail, err)
	}
	hk, bk, err := model.ParseMailContent(m.Content)
	if err != nil {
		return nil, fmt.Errorf("mail %s: %w", mail, err)
	}
	h, err := db.FindKey(ctx, model.Header, hk)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	b, err := db.FindKey(ctx, model.Body, bk)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return model.Join(model.Parts{Header: h.Content, Body: b.Content})
}
