package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// marker sets the backed-up mark (model.ColBackedUp) on a mail's receive,
// mail, header and body rows once all four are durable on at least
// Config.MinCopies sites (SPEC §6).
//
// Pumps hand it every receive row they merged without the mark and could
// not mark in that merge (presence.markInBatch: a mail whose rows crossed
// in pieces, or MinCopies above 2). A round
// checks presence on every site, then marks, in two batches per site:
//
//  1. A probe: a batch of set(backedup, 0) on the four rows of each mail.
//     A set never lowers a column, so value 0 changes nothing; its result
//     says whether the row exists, and dbd answers a write only when
//     everything before it is durable. A find would do the same but
//     returns the content, and a body may be 50 MiB.
//  2. For each mail found on enough sites, a batch of set(backedup, 1) on
//     its rows at every site that holds all four. Sites that lack some row
//     get the mark through replication (states merge by maximum).
//
// A mail present on too few sites is checked again with backoff, and
// sooner when a pump merges anything. Until it is settled it holds back
// the cursor of the pumps that brought it (tracker), so a crash of
// backupd cannot lose it: the next run streams it again.
//
// It tracks at most Config.MaxPending mails. A mail it has no room for is
// left to the pump's tracker, which holds the cursor below it; once the
// marker is down to half of MaxPending, it tells each tracker it refused
// since (tracker.room), and that pump ends its session, so the next one
// streams again from the stored cursor and hands the mail over again.
//
// Concurrency: add is called by pumps; run is one goroutine, and a round
// uses one goroutine per site, each touching only its own markSite.
type marker struct {
	cfg   *Config
	log   *slog.Logger
	m     *metrics
	sites []*markSite

	mu      sync.Mutex
	pending map[model.Key]*mentry      // receive key -> what is known
	mails   map[model.Key][2]model.Key // mail key -> header, body keys (cache)
	refused map[*tracker]struct{}      // trackers add had no room for, since told of room
	kick    chan struct{}              // cap 1: new rows were merged
}

// mentry is one receive row waiting for its mark.
type mentry struct {
	mail   model.Key
	at     map[string]bool // sites known to hold all four rows (pendingRecv.at)
	owners map[*tracker]struct{}
	gen    int // raised by each add: news since a round began
	tries  int
	due    time.Time
}

// mailRow is a mail row a pump merged: its key and the keys in its content.
type mailRow struct{ key, header, body model.Key }

const (
	maxMailCache = 1 << 16 // mail rows remembered from the streams
	roundSize    = 1024    // mails per round: 4 sets each fill one batch
	lookupPar    = 16      // concurrent finds of unknown mail rows
)

func newMarker(cfg *Config, log *slog.Logger, m *metrics, newClient func(Site) (*client.Client, error)) *marker {
	mk := &marker{cfg: cfg, log: log, m: m, pending: map[model.Key]*mentry{},
		mails: map[model.Key][2]model.Key{}, refused: map[*tracker]struct{}{}, kick: make(chan struct{}, 1)}
	for _, s := range cfg.Sites {
		mk.sites = append(mk.sites, &markSite{site: s, newClient: newClient, cfg: cfg, log: log})
	}
	return mk
}

// add records merged receive rows without mark (owned by tr) and merged
// mail rows. Rows it has no room for are handed back to tr as untracked.
func (mk *marker) add(tr *tracker, recv []pendingRecv, mails []mailRow) {
	if len(recv) == 0 && len(mails) == 0 {
		// Any merge may complete a mail that waits: check those due.
		signal(mk.kick)
		return
	}
	var rejected []pendingRecv
	mk.mu.Lock()
	for _, m := range mails {
		if len(mk.mails) >= maxMailCache {
			clear(mk.mails)
		}
		mk.mails[m.key] = [2]model.Key{m.header, m.body}
	}
	for _, r := range recv {
		e := mk.pending[r.key]
		if e == nil {
			if len(mk.pending) >= mk.cfg.MaxPending {
				rejected = append(rejected, r)
				mk.refused[tr] = struct{}{}
				continue
			}
			e = &mentry{mail: r.mail, owners: map[*tracker]struct{}{}, at: map[string]bool{}}
			mk.pending[r.key] = e
		}
		for _, name := range r.at {
			e.at[name] = true
		}
		e.owners[tr] = struct{}{}
		e.gen++
		e.due = time.Time{}
	}
	mk.m.pending.Set(float64(len(mk.pending)))
	mk.mu.Unlock()
	for _, r := range rejected {
		tr.untracked(r.key, r.stamp)
	}
	signal(mk.kick)
}

// run checks and marks until ctx ends.
func (mk *marker) run(ctx context.Context) {
	defer func() {
		for _, s := range mk.sites {
			s.drop()
		}
	}()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		work, next := mk.due(time.Now())
		if len(work) > 0 {
			mk.round(ctx, work)
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-mk.kick:
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// item is one receive row in a round.
type item struct {
	recv, mail, header, body model.Key
	known                    bool // header and body keys are known
	gen                      int  // mentry.gen when the round began
	copies                   int  // sites holding all four rows
	present                  []bool
	settled                  bool
}

// due returns up to roundSize entries whose check is due, and the time the
// next one falls due.
func (mk *marker) due(now time.Time) ([]*item, time.Time) {
	mk.mu.Lock()
	defer mk.mu.Unlock()
	var out []*item
	var next time.Time
	for k, e := range mk.pending {
		if e.due.After(now) {
			if next.IsZero() || e.due.Before(next) {
				next = e.due
			}
			continue
		}
		if len(out) == roundSize {
			next = now
			continue
		}
		it := &item{recv: k, mail: e.mail, gen: e.gen, present: make([]bool, len(mk.sites))}
		for i, site := range mk.sites {
			if e.at[site.site.Name] {
				it.present[i] = true
				it.copies++
			}
		}
		if hb, ok := mk.mails[e.mail]; ok {
			it.header, it.body, it.known = hb[0], hb[1], true
		}
		out = append(out, it)
	}
	return out, next
}

// round checks the items on every site, marks the ones on enough sites and
// settles them.
func (mk *marker) round(ctx context.Context, items []*item) {
	start := time.Now()
	mk.m.markRounds.Inc()
	mk.lookup(ctx, items)
	var known, probe []*item
	for _, it := range items {
		if !it.known {
			continue
		}
		known = append(known, it)
		if it.copies < mk.cfg.MinCopies {
			probe = append(probe, it)
		}
	}
	// Mails already known to be on enough sites need no probe.
	mk.eachSite(func(i int, s *markSite) { s.probe(ctx, i, probe, mk.m) })
	var ready []*item
	for _, it := range known {
		it.copies = 0
		for _, p := range it.present {
			if p {
				it.copies++
			}
		}
		if it.copies >= mk.cfg.MinCopies {
			ready = append(ready, it)
			it.settled = true
		}
	}
	if len(ready) > 0 {
		failed := make([][]*item, len(mk.sites))
		mk.eachSite(func(i int, s *markSite) { failed[i] = s.mark(ctx, i, ready, mk.m) })
		for _, f := range failed {
			for _, it := range f {
				it.settled = false
			}
		}
	}
	mk.finish(items)
	mk.m.markDuration.Observe(time.Since(start).Seconds())
}

// finish settles the marked items (telling the pumps) and schedules the
// others again with backoff. Once half of MaxPending is free, it tells the
// trackers it refused rows of that it has room (see marker): half, not
// any, so that a pump streams its backlog again once per many marks, not
// once per mark.
func (mk *marker) finish(items []*item) {
	type note struct {
		tr *tracker
		k  model.Key
	}
	var notes []note
	now := time.Now()
	marked := 0
	mk.mu.Lock()
	for _, it := range items {
		e := mk.pending[it.recv]
		if e == nil {
			continue
		}
		if it.settled {
			delete(mk.pending, it.recv)
			for tr := range e.owners {
				notes = append(notes, note{tr, it.recv})
			}
			marked++
			continue
		}
		if e.gen != it.gen {
			continue // a pump merged it again during the round: check again at once
		}
		e.tries++
		e.due = now.Add(min(50*time.Millisecond<<min(e.tries-1, 10), 5*time.Second))
	}
	var room []*tracker
	if len(mk.refused) > 0 && len(mk.pending) <= mk.cfg.MaxPending/2 {
		for tr := range mk.refused {
			room = append(room, tr)
		}
		clear(mk.refused)
	}
	mk.m.pending.Set(float64(len(mk.pending)))
	mk.mu.Unlock()
	mk.m.marked.Add(float64(marked))
	for _, n := range notes {
		n.tr.settle(n.k)
	}
	for _, tr := range room {
		tr.room()
	}
}

// lookup finds the header and body keys of items whose mail row was not in
// a merged batch, by reading the mail row (64 bytes) at any site.
func (mk *marker) lookup(ctx context.Context, items []*item) {
	var todo []*item
	for _, it := range items {
		if !it.known {
			todo = append(todo, it)
		}
	}
	if len(todo) == 0 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, lookupPar)
	for _, it := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, s := range mk.sites {
				if h, b, ok := s.findMail(ctx, it.mail); ok {
					it.header, it.body, it.known = h, b, true
					return
				}
			}
		}()
	}
	wg.Wait()
	mk.mu.Lock()
	for _, it := range todo {
		if it.known {
			if len(mk.mails) >= maxMailCache {
				clear(mk.mails)
			}
			mk.mails[it.mail] = [2]model.Key{it.header, it.body}
		}
	}
	mk.mu.Unlock()
}

func (mk *marker) eachSite(fn func(i int, s *markSite)) {
	var wg sync.WaitGroup
	for i, s := range mk.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, s)
		}()
	}
	wg.Wait()
}

// markSite is the marker's connection to one site. Only one goroutine uses
// it at a time (one per site per round; lookups use the client, which is
// safe for concurrent use, and never replace it).
type markSite struct {
	site      Site
	cfg       *Config
	log       *slog.Logger
	newClient func(Site) (*client.Client, error)

	mu        sync.Mutex
	c         *client.Client
	downUntil time.Time
	fails     int
}

// get returns the client, or nil while the site is considered down.
func (s *markSite) get() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Now().Before(s.downUntil) {
		return nil
	}
	if s.c == nil {
		c, err := s.newClient(s.site)
		if err != nil {
			return nil
		}
		s.c = c
	}
	return s.c
}

// failed drops the connection after a failure that was not an answer from
// dbd (a timeout or a lost connection may mean a stalled link), and keeps
// the site out of rounds for a while so a dead site does not slow them.
func (s *markSite) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// An answer from dbd (refused, not found) says the connection works.
	// probe wraps its error, so a type assertion never matched, and a
	// refusal dropped the connection and kept the site out of rounds.
	var we *wire.Error
	if errors.As(err, &we) {
		return
	}
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
	s.fails++
	s.downUntil = time.Now().Add(min(100*time.Millisecond<<min(s.fails-1, 10), 5*time.Second))
}

func (s *markSite) ok() {
	s.mu.Lock()
	s.fails = 0
	s.mu.Unlock()
}

func (s *markSite) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

func (s *markSite) findMail(ctx context.Context, mail model.Key) (h, b model.Key, ok bool) {
	c := s.get()
	if c == nil {
		return h, b, false
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout)
	defer cancel()
	row, err := c.FindKey(fctx, model.Mail, mail)
	if err != nil {
		return h, b, false
	}
	h, b, err = model.ParseMailContent(row.Content)
	return h, b, err == nil
}

// rowsOf lists the four rows that carry a mail's mark.
func rowsOf(it *item) [4]struct {
	t model.Table
	k model.Key
} {
	return [4]struct {
		t model.Table
		k model.Key
	}{{model.Receive, it.recv}, {model.Mail, it.mail}, {model.Header, it.header}, {model.Body, it.body}}
}

// batchOf builds one set request per row of items with value v.
func batchOf(items []*item, v uint64) []wire.Request {
	reqs := make([]wire.Request, 0, 4*len(items))
	for _, it := range items {
		for _, r := range rowsOf(it) {
			reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: r.t, Ref: wire.Ref{ByKey: true, Key: r.k},
				Name: model.ColBackedUp, Value: v})
		}
	}
	return reqs
}

// probe sets present[i] for the items whose four rows all exist at the site.
func (s *markSite) probe(ctx context.Context, i int, items []*item, m *metrics) {
	c := s.get()
	if c == nil || len(items) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout)
	defer cancel()
	res, err := c.Batch(pctx, batchOf(items, 0))
	if err != nil {
		if ctx.Err() == nil {
			m.markErrors.WithLabelValues(s.site.Name).Inc()
			s.failed(fmt.Errorf("probe: %w", err))
		}
		return
	}
	s.ok()
	for j, it := range items {
		all := true
		for _, r := range res[4*j : 4*j+4] {
			all = all && !r.NotFound
		}
		it.present[i] = all
	}
}

// mark sets the mark on the items present at the site and returns the ones
// it could not mark.
func (s *markSite) mark(ctx context.Context, i int, items []*item, m *metrics) []*item {
	var here []*item
	for _, it := range items {
		if it.present[i] {
			here = append(here, it)
		}
	}
	if len(here) == 0 {
		return nil
	}
	c := s.get()
	if c == nil {
		return here
	}
	failed, answered := s.markParts(ctx, c, here, m)
	if answered {
		s.ok()
	}
	return failed
}

// markParts marks the items in one batch. dbd refuses a batch whole for
// one row that cannot take the mark (full of columns, model.MaxColumns),
// so a refused batch is split in halves, each marked alone, down to the
// one mail refused. The mails of a round that fail fall due together
// again, so one such row used to hold back every other mail of its rounds
// for good (and smtpd answered 451 for them); halving finds it in about
// 2·log2(n) batches where one batch a mail would take n. It returns the
// items not marked, and false if the site failed to answer (the rest are
// then not tried).
func (s *markSite) markParts(ctx context.Context, c *client.Client, items []*item, m *metrics) (failed []*item, answered bool) {
	mctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	_, err := c.Batch(mctx, batchOf(items, model.FlagSet))
	cancel()
	switch {
	case err == nil:
		return nil, true
	case ctx.Err() != nil:
		return items, false
	case !refused(err):
		m.markErrors.WithLabelValues(s.site.Name).Inc()
		s.failed(err)
		return items, false
	case len(items) == 1:
		m.markErrors.WithLabelValues(s.site.Name).Inc()
		s.log.Error("site refuses the backed-up mark of a mail; it stays unmarked", "site", s.site.Name,
			"receive", items[0].recv.String(), "err", err)
		return items, true
	}
	h := len(items) / 2
	failed, answered = s.markParts(ctx, c, items[:h], m)
	if !answered {
		return append(failed, items[h:]...), false
	}
	rest, answered := s.markParts(ctx, c, items[h:], m)
	return append(failed, rest...), answered
}
