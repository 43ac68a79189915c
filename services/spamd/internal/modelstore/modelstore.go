// Package modelstore keeps spamd's classifier model in dbd, so every spamd
// instance on both sites judges with the same model (SPEC §7: "the model
// and lists live in dbd").
//
// Layout: the model's bytes (classify.Model.MarshalBinary, deterministic)
// are one text row. A config row with the fixed content "twinmx-spamd-model/1"
// links to it by the column "model.<base32 key>" whose value is the time
// it was pushed (Unix ms), raised above every earlier link if the pushing
// host's clock is behind: the newest link is the model. A push is one
// atomic batch, so a reader sees the old model or the new one, never half.
package modelstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
)

// DB is what the store needs of a dbd client; *client.Client implements it.
type DB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	Watch(ctx context.Context, t model.Table, keys []model.Key, initial bool) (*client.Stream, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var anchor = []byte("twinmx-spamd-model/1")

const linkPrefix = "model."

// ErrNoModel is returned by Load when no model was ever pushed.
var ErrNoModel = errors.New("modelstore: no model in dbd")

// Push stores m as the current model. Its link is valued now, or just
// above the newest link if that is later: the newest link is the model,
// so a push from a host whose clock is behind the previous pusher's would
// otherwise be stored, reported pushed, and never used.
func Push(ctx context.Context, db DB, m *classify.Model, now time.Time) (model.Key, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return model.Key{}, fmt.Errorf("encode model: %w", err)
	}
	k := model.KeyOf(model.Text, b)
	at := uint64(max(now.UnixMilli(), 1))
	a, err := db.FindKey(ctx, model.Config, model.KeyOf(model.Config, anchor))
	switch {
	case err == nil:
		for name, v := range a.State.Cols {
			if _, isLink := model.ParseLinkColumn(linkPrefix, name); isLink && v >= at && v < math.MaxUint64 {
				at = v + 1
			}
		}
	case !errors.Is(err, client.ErrNotFound):
		return model.Key{}, fmt.Errorf("read model anchor: %w", err)
	}
	_, err = db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: b},
		{Op: wire.OpFindOrInsert, Table: model.Config, Content: anchor},
		{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: anchor}, Name: model.LinkColumn(linkPrefix, k), Value: at},
	})
	if err != nil {
		return model.Key{}, fmt.Errorf("push model: %w", err)
	}
	return k, nil
}

// current returns the key of the newest model linked from the anchor state.
func current(st model.State) (k model.Key, ok bool) {
	var best uint64
	for name, v := range st.Cols {
		mk, isLink := model.ParseLinkColumn(linkPrefix, name)
		if isLink && (!ok || v > best || v == best && mk.String() > k.String()) {
			k, ok, best = mk, true, v
		}
	}
	return k, ok
}

// Load reads the current model.
func Load(ctx context.Context, db DB) (*classify.Model, model.Key, error) {
	a, err := db.FindKey(ctx, model.Config, model.KeyOf(model.Config, anchor))
	if errors.Is(err, client.ErrNotFound) {
		return nil, model.Key{}, ErrNoModel
	}
	if err != nil {
		return nil, model.Key{}, fmt.Errorf("read model anchor: %w", err)
	}
	return loadFrom(ctx, db, a.State)
}

func loadFrom(ctx context.Context, db DB, st model.State) (*classify.Model, model.Key, error) {
	k, ok := current(st)
	if !ok {
		return nil, model.Key{}, ErrNoModel
	}
	row, err := db.FindKey(ctx, model.Text, k)
	if err != nil {
		return nil, k, fmt.Errorf("read model %s: %w", k, err)
	}
	m := classify.New()
	if err := m.UnmarshalBinary(row.Content); err != nil {
		return nil, k, fmt.Errorf("decode model %s: %w", k, err)
	}
	return m, k, nil
}

// Live is the current model, kept up to date from dbd: Follow watches the
// anchor row and loads each newly pushed model. It starts with a fallback
// (a model from a file, or nil for none).
type Live struct {
	mu  sync.RWMutex
	m   *classify.Model
	key model.Key
}

// NewLive returns a Live holding fallback until dbd has a model.
func NewLive(fallback *classify.Model) *Live { return &Live{m: fallback} }

// Init loads the model dbd holds, if any, before judging starts: the
// first mails must not be judged without it while Follow subscribes.
func (l *Live) Init(ctx context.Context, db DB) error {
	m, k, err := Load(ctx, db)
	if errors.Is(err, ErrNoModel) {
		return nil
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m, l.key = m, k
	return nil
}

// Current returns the model to judge with (nil: none).
func (l *Live) Current() *classify.Model {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.m
}

// Follow keeps l current until ctx ends, re-subscribing after errors.
func (l *Live) Follow(ctx context.Context, db DB, log *slog.Logger) {
	ak := model.KeyOf(model.Config, anchor)
	client.Resubscribe(ctx, 2*time.Second, func(ctx context.Context) error { return l.follow(ctx, db, ak, log) }, func(err error) {
		log.Warn("model watch ended; subscribing again", "err", err)
	})
}

func (l *Live) follow(ctx context.Context, db DB, ak model.Key, log *slog.Logger) error {
	st, err := db.Watch(ctx, model.Config, []model.Key{ak}, true)
	if err != nil {
		return err
	}
	defer st.Close()
	for {
		row, err := st.Next(ctx)
		if err != nil {
			return err
		}
		k, ok := current(row.State)
		l.mu.RLock()
		same := ok && k == l.key
		l.mu.RUnlock()
		if !ok || same {
			continue
		}
		m, k, err := loadFrom(ctx, db, row.State)
		if err != nil {
			log.Warn("loading the pushed model failed; keeping the current one", "err", err)
			continue
		}
		l.mu.Lock()
		l.m, l.key = m, k
		l.mu.Unlock()
		log.Info("model loaded from dbd", "key", k)
	}
}
