package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twinmx/twinmx/pkg/model"
)

// MutKind is the kind of one mutation.
type MutKind uint8

// Mutation kinds (SPEC §4).
const (
	Insert MutKind = iota + 1 // find-or-insert Content at Key
	Set                       // raise column Name to Value
	Add                       // add Value to this site's count of counter Name
)

// Mutation is one operation of an atomic request. For an Insert, Apply
// computes Key from Table and Content (the caller's Key is overwritten), so
// a row is never stored under a key that does not match its content.
type Mutation struct {
	Kind    MutKind
	Table   model.Table
	Key     model.Key
	Content []byte // Insert only
	Name    string // Set: column; Add: counter
	Value   uint64 // Set: value; Add: delta
}

// Result is the outcome of one mutation or merged row.
type Result struct {
	NotFound bool   // Set/Add: the row does not exist (nothing changed)
	RowNo    uint64 // the row's local number
	New      bool   // Insert: the row was created; Merge: the row was created or changed
}

// MergeRow is one row to merge from another site: inserted with its content
// if missing, otherwise its state merged into ours (SPEC §3: maximum of each
// column, per-site maximum of each counter).
type MergeRow struct {
	Table   model.Table
	Key     model.Key
	Content []byte // required when the row may be missing here
	State   model.State
}

type writeReq struct {
	muts   []Mutation
	merge  []MergeRow
	cursor string // merge: cursor to raise in the same batch ("" = none)
	cval   uint64
	bytes  int
	// conds, if set, makes this an armed request (see Arm); disarm
	// withdraws the armed request it names.
	conds  []Cond
	disarm *writeReq

	res  []Result
	err  error
	done chan struct{}
}

// Apply applies the mutations as one atomic, durable transaction and
// returns one result per mutation. It returns only after the commit is
// synced to disk. A validation error (wrapping ErrInvalid) means nothing was
// applied. If ctx ends first Apply returns ctx.Err(), and the write may or
// may not happen.
func (s *Store) Apply(ctx context.Context, muts []Mutation) ([]Result, error) {
	n := 0
	for i := range muts {
		if err := checkMutation(&muts[i]); err != nil {
			return nil, fmt.Errorf("%w: mutation %d: %w", ErrInvalid, i, err)
		}
		n += len(muts[i].Content)
	}
	return s.submit(ctx, &writeReq{muts: muts, bytes: n, done: make(chan struct{})})
}

// Merge merges rows from another site and raises the cursor named cursor to
// at least cval in the same atomic, durable batch, so a replicator that
// restarts from the stored cursor neither skips nor repeats work. An empty
// cursor name stores no cursor.
func (s *Store) Merge(ctx context.Context, rows []MergeRow, cursor string, cval uint64) ([]Result, error) {
	n := 0
	for i := range rows {
		r := &rows[i]
		if err := model.CheckTable(r.Table); err != nil {
			return nil, fmt.Errorf("%w: row %d: %w", ErrInvalid, i, err)
		}
		if r.Content != nil && model.KeyOf(r.Table, r.Content) != r.Key {
			return nil, fmt.Errorf("%w: row %d: key does not match content", ErrInvalid, i)
		}
		n += len(r.Content)
	}
	if cursor != "" {
		if err := model.CheckName(cursor); err != nil {
			return nil, fmt.Errorf("%w: cursor: %w", ErrInvalid, err)
		}
	}
	return s.submit(ctx, &writeReq{merge: rows, cursor: cursor, cval: cval, bytes: n, done: make(chan struct{})})
}

func checkMutation(m *Mutation) error {
	if err := model.CheckTable(m.Table); err != nil {
		return err
	}
	switch m.Kind {
	case Insert:
		m.Key = model.KeyOf(m.Table, m.Content)
	case Set, Add:
		if err := model.CheckName(m.Name); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mutation kind %d", m.Kind)
	}
	return nil
}

func (s *Store) submit(ctx context.Context, r *writeReq) ([]Result, error) {
	if err := s.enqueue(ctx, r); err != nil {
		return nil, err
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.failed:
		// Groups synced before the failure were answered before it was
		// signalled; anything else is not acknowledged.
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return nil, ErrFailed
		}
	case <-s.done:
		return s.stoppedAnswer(r)
	}
}

// stoppedAnswer is the answer to r once the writer and syncer have
// stopped (s.done is closed). Every request they took is answered by
// then; one enqueued after the writer drained its queue for the last
// time (Close racing the send) never will be, and must not be waited for.
func (s *Store) stoppedAnswer(r *writeReq) ([]Result, error) {
	select {
	case <-r.done:
		return r.res, r.err
	default:
	}
	if s.Err() != nil {
		return nil, ErrFailed
	}
	return nil, ErrClosed
}

// enqueue hands r to the writer.
func (s *Store) enqueue(ctx context.Context, r *writeReq) error {
	select {
	case <-s.failed:
		return ErrFailed
	default:
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	case <-s.failed:
		return ErrFailed
	}
}

// writer is the only goroutine that writes to Pebble. It stages and
// applies groups; the syncer goroutine waits for their fsync and answers.
// See the Store doc.
func (s *Store) writer() {
	defer close(s.syncQ)
	for {
		// A fresh slice each time: the syncer owns the previous one.
		var group []*writeReq
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.quit:
			s.drain(ErrClosed)
			s.failArmed(ErrClosed)
			return
		case <-s.failed:
			s.drain(ErrFailed)
			s.failArmed(ErrFailed)
			return
		}
		// Each request is staged (its rows read) as it arrives, so those
		// reads overlap the fsync of the previous group instead of
		// delaying the next one. Every earlier group is applied, so the
		// reads see it.
		g := s.newGroup()
		bytes := 0
		add := func(r *writeReq) {
			parked := false
			if r.conds != nil || r.disarm != nil {
				parked = g.stageArmed(r)
			} else {
				g.stageRequest(r)
			}
			if !parked {
				group = append(group, r)
				bytes += r.bytes
			}
			// Armed requests the group's changes made true join it.
			for _, a := range g.fired {
				group = append(group, a)
				bytes += a.bytes
			}
			g.fired = g.fired[:0]
		}
		add(first)
		// Take what is waiting. While an earlier group's fsync is still
		// running, keep gathering until it ends: the new group could not
		// be synced sooner anyway (the WAL syncs in order), and one larger
		// group per fsync cycle costs fewer WAL syncs than many small ones.
	fill:
		for len(group) < s.opts.MaxGroup && bytes < s.opts.MaxGroupBytes {
			s.chMu.Lock()
			synced := s.changed
			s.chMu.Unlock()
			select {
			case r := <-s.reqs:
				add(r)
				continue
			default:
			}
			if s.durable.Load() == s.gen {
				break fill
			}
			select {
			case r := <-s.reqs:
				add(r)
			case <-synced:
			case <-s.quit:
				break fill
			case <-s.failed:
				break fill
			}
		}
		g.release()
		if len(group) == 0 {
			// Only an armed request came, and it is parked: nothing to
			// commit.
			continue
		}
		var err error
		select {
		case <-s.failed:
			// An earlier group's WAL write or sync failed while this one
			// was gathered: hand it to Pebble no more. Pebble's WAL writer
			// keeps its error, and its commitWrite panics on a WAL writer
			// with an error, which killed dbd when the disk filled
			// (TestNoCommitAfterFailedSync). A group applied while an
			// earlier one's sync is still running (a full group, see fill)
			// can still meet that panic: the process dies without
			// answering it, which is safe, only less clear.
			err = ErrFailed
		default:
		}
		var pg *appliedGroup
		if err == nil {
			pg, err = s.applyGroup(g, group, bytes)
		}
		if err != nil {
			s.fail(err)
			for _, r := range group {
				if r.err == nil {
					r.err, r.res = ErrFailed, nil
				}
				close(r.done)
			}
			s.drain(ErrFailed)
			s.failArmed(ErrFailed)
			return
		}
		s.syncQ <- pg
	}
}

// drain answers every queued request with err.
func (s *Store) drain(err error) {
	for {
		select {
		case r := <-s.reqs:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}

// appliedGroup is a group applied to Pebble (visible to snapshots) whose
// WAL sync may still be running. It is owned by the syncer once queued.
type appliedGroup struct {
	gen     uint64
	batch   *pebble.Batch // nil if the group changed nothing
	reqs    []*writeReq
	changed []Row
	ring    []Row // changed, as the changes stream sends them (changeRing)
	cached  []cachedRow
	stamp   uint64
	count   [model.Config + 1]uint64
	bytes   int
	start   time.Time
}

// syncer waits, in order, for each applied group's fsync, then makes it
// visible to readers (the durable generation), publishes its changes and
// answers its requests. Pebble syncs its WAL in order, so a group is
// durable only after every earlier one.
func (s *Store) syncer() {
	defer close(s.done)
	failed := false
	for pg := range s.syncQ {
		var err error
		if pg.batch != nil {
			// NB: SyncWait must be called before Close (pebble
			// ApplyNoSyncWait contract), even after a failure.
			err = pg.batch.SyncWait()
			pg.batch.Close()
		}
		if err == nil && failed {
			err = ErrFailed
		}
		if err != nil {
			if !failed {
				s.fail(fmt.Errorf("sync group of %d requests: %w", len(pg.reqs), err))
				failed = true
			}
			for _, r := range pg.reqs {
				if r.err == nil {
					r.err, r.res = ErrFailed, nil
				}
				close(r.done)
			}
			continue
		}
		for _, t := range model.Tables() {
			s.counts[t].Store(pg.count[t])
		}
		// Before the group is durable: a view that starts once it is must
		// not find a row's value from before it (rowCache).
		s.rcache.update(pg.gen, pg.changed, pg.cached)
		s.durable.Store(pg.gen)
		s.lastStamp.Store(pg.stamp)
		s.ring.add(pg.ring)
		s.chMu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.chMu.Unlock()
		s.hub.publish(pg.changed)
		for _, r := range pg.reqs {
			close(r.done)
		}
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(len(pg.reqs), pg.bytes, time.Since(pg.start))
		}
	}
}

// staged is a row as the current group will leave it.
type staged struct {
	meta     rowMeta
	exists   bool   // exists on disk or earlier in the group
	content  []byte // set when this group inserts the row
	inserted bool
	oldStamp uint64 // stamp on disk before this group (0: none)
	dirty    bool   // must be written
	// origin names the merge cursor of the merge that left the row in
	// exactly the state the other site sent; "" after a local change or a
	// merge that combined states. A replicator sending changes back to
	// that site can leave such rows' content out: the site has it.
	origin string
}

// group is the writer's state for one group commit.
type group struct {
	s      *Store
	rows   map[rowRef]*staged
	order  []rowRef // dirty rows in first-touch order
	nextNo [model.Config + 1]uint64
	count  [model.Config + 1]uint64
	stamp  uint64
	cursor map[string]uint64
	// probe reads the rows the group touches (see probe); opened at the
	// first lookup, after every earlier group was applied.
	probe *probe
	// fired holds the armed requests staged since the writer last looked
	// (see fireArmed).
	fired []*writeReq
}

// newGroup starts the next group commit. Only the writer calls it.
func (s *Store) newGroup() *group {
	return &group{s: s, rows: make(map[rowRef]*staged), nextNo: s.nextRow, count: s.count, stamp: s.stamp}
}

// applyGroup applies the staged requests of group g to Pebble without
// waiting for the WAL sync (the syncer waits). Only the writer calls it.
func (s *Store) applyGroup(g *group, reqs []*writeReq, nbytes int) (*appliedGroup, error) {
	start := time.Now()
	// Size the batch once: a 50 MiB content must not be copied through a
	// chain of growing buffers.
	b := s.db.NewBatchWithSize(nbytes + 64*(nbytes/chunkSize+1) + 256*len(g.order) + 1024)
	changed := make([]Row, 0, len(g.order))
	// The changes as the changes stream sends them, for the ring: with
	// their origin and a copy of their inline content (the meta's aliases
	// the request's buffer, which may be large), in one slab. The
	// recently written rows (recentRows) share those copies.
	ring := make([]Row, 0, len(g.order))
	inline := 0
	for _, ref := range g.order {
		inline += len(g.rows[ref].meta.Inline)
	}
	slab := make([]byte, 0, inline)
	// The stored values of the rows readers of whole mails read, for the
	// row cache (rowCache), which copies them: the slab grows as it must,
	// and the rows a slice still names keep its old arrays until then.
	var cached []cachedRow
	var cslab []byte
	// Keys and values are built in scratch buffers: the batch copies them.
	var kb, vb, cb []byte
	for _, ref := range g.order {
		st := g.rows[ref]
		if st.inserted {
			// Small contents live in the meta value (see inlineMax).
			for i, off := 0, 0; st.meta.Inline == nil && off < len(st.content); i, off = i+1, off+chunkSize {
				end := min(off+chunkSize, len(st.content))
				kb = appendContentKey(kb[:0], ref.Table, ref.Key, uint32(i))
				if err := b.Set(kb, st.content[off:end], nil); err != nil {
					b.Close()
					return nil, fmt.Errorf("stage content: %w", err)
				}
			}
			// Tables that are not numbered (see numbered) get an entry for
			// the group's last row only.
			if numbered(ref.Table) || st.meta.RowNo == g.nextNo[ref.Table]-1 {
				if err := b.Set(appendNumberKey(kb[:0], ref.Table, st.meta.RowNo), ref.Key[:], nil); err != nil {
					b.Close()
					return nil, fmt.Errorf("stage number: %w", err)
				}
			}
		}
		if st.oldStamp != 0 {
			// A change-log key is set once, when its row gets that stamp
			// (stamps are never handed out twice), and deleted once, when
			// the row changes again. So a single delete: when it meets its
			// set, in a flush or a compaction, both vanish. A plain delete
			// left a tombstone that outlived its set down to the bottom
			// level, two or three a received mail.
			if err := b.SingleDelete(appendStampKey(kb[:0], st.oldStamp), nil); err != nil {
				b.Close()
				return nil, fmt.Errorf("stage stamp delete: %w", err)
			}
		}
		vb = appendChange(vb[:0], ref, st.origin)
		if err := b.Set(appendStampKey(kb[:0], st.meta.Stamp), vb, nil); err != nil {
			b.Close()
			return nil, fmt.Errorf("stage stamp: %w", err)
		}
		vb = st.meta.appendTo(vb[:0])
		if err := b.Set(appendRowKey(kb[:0], ref.Table, ref.Key), vb, nil); err != nil {
			b.Close()
			return nil, fmt.Errorf("stage row: %w", err)
		}
		if readWhole(ref.Table) {
			n := len(cslab)
			cslab = append(cslab, vb...)
			cached = append(cached, cachedRow{ref, cslab[n:len(cslab):len(cslab)]})
		}
		row := ref.rowWith(&st.meta)
		// The child index entry carries the meta too (childValue), so it
		// is rewritten with every change of the row. A content that names
		// a parent is small, hence inline (inlineMax; the open-time
		// rebuild made older chunked ones inline).
		if row.HasParent {
			cb = append(append(cb[:0], ref.Key[:]...), vb...)
			if err := b.Set(appendChildKey(kb[:0], ref.Table, row.Parent, st.meta.RowNo), cb, nil); err != nil {
				b.Close()
				return nil, fmt.Errorf("stage child index: %w", err)
			}
		}
		changed = append(changed, row)
		row.Origin = st.origin
		if st.meta.Inline != nil {
			n := len(slab)
			slab = append(slab, st.meta.Inline...)
			row.Inline = slab[n:len(slab):len(slab)]
		} else {
			row.InChunks = true
		}
		ring = append(ring, row)
	}
	for _, t := range model.Tables() {
		if g.count[t] != s.count[t] {
			if err := b.Set(countKey(t), binary.BigEndian.AppendUint64(nil, g.count[t]), nil); err != nil {
				b.Close()
				return nil, fmt.Errorf("stage count: %w", err)
			}
		}
	}
	for name, v := range g.cursor {
		if err := b.Set(cursorKey(name), binary.BigEndian.AppendUint64(nil, v), nil); err != nil {
			b.Close()
			return nil, fmt.Errorf("stage cursor: %w", err)
		}
	}
	// Announce the generation before the batch becomes visible: a View
	// that snapshots it then also waits for its fsync (see View).
	s.gen++
	s.applied.Store(s.gen)
	if b.Empty() {
		b.Close()
		b = nil
	} else {
		// NB: pebble.Sync is what makes an acknowledgement true; NoSync
		// loses writes even on a process crash (pebble WriteOptions doc).
		// The syncer waits for the fsync before anyone is answered.
		if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
			b.Close()
			return nil, fmt.Errorf("apply group of %d requests: %w", len(reqs), err)
		}
	}
	s.nextRow, s.count, s.stamp = g.nextNo, g.count, g.stamp
	for i, ref := range g.order {
		m := g.rows[ref].meta
		m.Inline = ring[i].Inline // the slab's copy: m's aliases a request's buffer
		s.recent.put(ref, m)
	}
	return &appliedGroup{gen: s.gen, batch: b, reqs: reqs, changed: changed, ring: ring, cached: cached, stamp: g.stamp,
		count: g.count, bytes: nbytes, start: start}, nil
}

// lookup returns the staged row for ref, reading it from disk the first
// time. The returned value is a copy the caller may modify.
func (g *group) lookup(ref rowRef) (staged, error) {
	if st, ok := g.rows[ref]; ok {
		c := *st
		c.meta.State = st.meta.State.Clone()
		return c, nil
	}
	if m, ok := g.s.recent.get(ref); ok {
		m.State = m.State.Clone()
		return staged{meta: m, exists: true, oldStamp: m.Stamp}, nil
	}
	if g.probe == nil {
		p, err := newProbe(g.s.db, g.s.filtersFit())
		if err != nil {
			return staged{}, fmt.Errorf("read row %s %s: %w", ref.Table, ref.Key, err)
		}
		g.probe = p
	}
	m, ok, err := getMeta(g.probe, ref)
	if err != nil {
		return staged{}, err
	}
	return staged{meta: m, exists: ok, oldStamp: m.Stamp}, nil
}

// release frees the group's probe. The writer calls it before it applies
// the group: the next group's probe must see this one.
func (g *group) release() {
	if g.probe != nil {
		g.probe.close()
		g.probe = nil
	}
}

// stageRequest stages all of r or nothing of it, and sets r.res or r.err.
func (g *group) stageRequest(r *writeReq) {
	local := make(map[rowRef]*staged)
	var order []rowRef
	nextNo, count, stamp := g.nextNo, g.count, g.stamp
	get := func(ref rowRef) (*staged, error) {
		if st, ok := local[ref]; ok {
			return st, nil
		}
		st, err := g.lookup(ref)
		if err != nil {
			return nil, err
		}
		local[ref] = &st
		order = append(order, ref)
		return &st, nil
	}
	touch := func(st *staged) {
		stamp = max(stamp, g.s.stampFloor) + 1
		st.meta.Stamp = stamp
		st.dirty = true
		st.origin = ""
	}
	insert := func(ref rowRef, content []byte, state model.State) *staged {
		st := local[ref]
		st.exists, st.inserted, st.content = true, true, content
		st.meta = rowMeta{RowNo: nextNo[ref.Table], Size: uint64(len(content)), State: state}
		if len(content) > 0 && len(content) <= inlineMax {
			st.meta.Inline = content
		}
		nextNo[ref.Table]++
		count[ref.Table]++
		touch(st)
		return st
	}
	fail := func(err error) {
		r.err, r.res = err, nil
	}

	for i := range r.muts {
		m := &r.muts[i]
		ref := rowRef{m.Table, m.Key}
		st, err := get(ref)
		if err != nil {
			fail(err)
			return
		}
		var res Result
		switch m.Kind {
		case Insert:
			if !st.exists {
				insert(ref, m.Content, model.State{})
				res.New = true
			}
		case Set:
			if !st.exists {
				res.NotFound = true
				break
			}
			ch, err := st.meta.State.Set(m.Name, m.Value)
			if err != nil {
				fail(fmt.Errorf("%w: mutation %d: %w", ErrInvalid, i, err))
				return
			}
			if ch {
				touch(st)
			}
		case Add:
			if !st.exists {
				res.NotFound = true
				break
			}
			ch, err := st.meta.State.Add(m.Name, g.s.slot, m.Value)
			if err != nil {
				fail(fmt.Errorf("%w: mutation %d: %w", ErrInvalid, i, err))
				return
			}
			if ch {
				touch(st)
			}
		}
		res.RowNo = st.meta.RowNo
		if res.NotFound {
			res.RowNo = 0
		}
		r.res = append(r.res, res)
	}
	for i := range r.merge {
		mr := &r.merge[i]
		ref := rowRef{mr.Table, mr.Key}
		st, err := get(ref)
		if err != nil {
			fail(err)
			return
		}
		var res Result
		if !st.exists {
			if mr.Content == nil {
				fail(fmt.Errorf("%w: merge row %d (%s %s): missing here and no content sent", ErrInvalid, i, mr.Table, mr.Key))
				return
			}
			insert(ref, mr.Content, mr.State.Clone())
			st.origin = r.cursor
			res.New = true
		} else {
			ch, err := st.meta.State.MergeInto(mr.State)
			if err != nil {
				fail(fmt.Errorf("%w: merge row %d: %w", ErrInvalid, i, err))
				return
			}
			if ch {
				touch(st)
				if st.meta.State.Equal(mr.State) {
					st.origin = r.cursor
				}
				res.New = true
			}
		}
		res.RowNo = st.meta.RowNo
		r.res = append(r.res, res)
	}
	if r.cursor != "" {
		if g.cursor == nil {
			g.cursor = make(map[string]uint64)
		}
		cur, ok := g.cursor[r.cursor]
		if !ok {
			v, err := readCursor(g.s.db, r.cursor)
			if err != nil {
				fail(err)
				return
			}
			cur = v
		}
		g.cursor[r.cursor] = max(cur, r.cval)
	}
	// The whole request is valid: fold it into the group.
	for _, ref := range order {
		st := local[ref]
		if !st.dirty {
			continue
		}
		prev, seen := g.rows[ref]
		if !seen {
			g.order = append(g.order, ref)
		} else {
			// Keep the disk stamp to delete and the insert flag of the
			// earlier request in this group.
			st.oldStamp = prev.oldStamp
			st.inserted = st.inserted || prev.inserted
			if prev.inserted {
				st.content = prev.content
			}
		}
		g.rows[ref] = st
	}
	g.nextNo, g.count, g.stamp = nextNo, count, stamp
	if len(g.s.armed) > 0 {
		dirty := order[:0]
		for _, ref := range order {
			if local[ref].dirty {
				dirty = append(dirty, ref)
			}
		}
		g.fireArmed(dirty)
	}
}
