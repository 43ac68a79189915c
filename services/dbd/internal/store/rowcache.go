package store

import (
	"sync"
	"sync/atomic"

	"github.com/twinmx/twinmx/pkg/model"
)

// rowCache keeps the stored values (metas) of the rows that readers of
// whole mails read (View.FindEncoded, for op mail and op mails: the
// receive, mail, header, body and received rows), so that reading them is
// a map lookup instead of a Pebble point read. Every point read seeks the
// memtable and every level (a file load and a bloom filter check each, a
// block search where the filter passes): about half of dbd's CPU in an
// IMAP FETCH BODY[] of the corpus, with every block already in the block
// cache (docs/dbd.md, "Storage").
//
// The cache is written through: the syncer puts the values of a durable
// group's rows of those tables, so mail is in it from its delivery (or
// its replication from the other site), when clients read it most: a
// POP3 client's next poll, an IMAP client's FETCH after IDLE reported
// it. A view that reads a row the cache lacks puts it there too, so a
// second read of older mail is a lookup as well.
//
// # What a reader sees
//
// An entry is always the row's latest durable value. The syncer replaces
// (or drops) the entries of a group's rows before it marks the group
// durable (update), so a view that starts after a write was acknowledged
// never finds the value from before it. A view fills the cache with what
// it read from its snapshot only if no group changed rows since the
// snapshot's durable generation (its low mark): otherwise the value it
// read might be one a later group already replaced. Pebble applies a
// group before it is durable, so the low mark is the durable generation
// read before the snapshot was taken, which the snapshot holds whole.
//
// A view may therefore find a row newer than its snapshot (a row changed
// or inserted by a group that became durable after the view started).
// For the readers of whole mails that is a later true state of the row,
// as a read a moment later would give: states only rise and contents never
// change. Every other read of a view still comes from its snapshot.
//
// Two generations, each up to half of max bytes of values: when the
// current one is full it becomes the previous one and the previous one is
// dropped. Values are copied into slabs of their generation: one
// allocation for many rows, and the generation's bytes are what it holds.
type rowCache struct {
	max int // bytes of values in both generations; 0: off

	mu        sync.Mutex
	cur, prev cacheGen
	// dropped is the generation of the last group whose rows were
	// dropped: a view whose low mark is below it may not fill.
	dropped uint64

	hits, misses atomic.Uint64
}

type cacheGen struct {
	rows  map[rowRef][]byte
	slab  []byte
	bytes int
}

// DefaultRowCacheSize is the row cache's size unless the operator chose:
// the rows of some 20,000 corpus mails.
const DefaultRowCacheSize = 32 << 20

// MaxRowCacheSize is the largest row cache dbd accepts (a 32-bit dbd
// counts its bytes in an int).
const MaxRowCacheSize = 1 << 30

// rowCacheSlab is the size of a generation's value slabs: what it holds
// beyond its bytes is at most one slab's unused end.
const rowCacheSlab = 256 << 10

// get returns the cached value of ref. The value is shared: the caller
// must not change it.
func (c *rowCache) get(ref rowRef) ([]byte, bool) {
	if c.max == 0 {
		return nil, false
	}
	c.mu.Lock()
	val, ok := c.cur.rows[ref]
	if !ok {
		val, ok = c.prev.rows[ref]
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return val, ok
}

// fill remembers val, read from a snapshot with low mark low, as the value
// of ref, unless a group changed rows since low. val is copied.
func (c *rowCache) fill(ref rowRef, val []byte, low uint64) {
	if c.max == 0 || len(val) > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if low < c.dropped {
		return
	}
	if _, ok := c.cur.rows[ref]; ok {
		return
	}
	c.put(ref, val)
}

// put copies val into the current generation as the value of ref. The
// caller holds mu.
func (c *rowCache) put(ref rowRef, val []byte) {
	if c.cur.rows == nil || c.cur.bytes+len(val) > c.max/2 {
		c.prev, c.cur = c.cur, cacheGen{rows: make(map[rowRef][]byte)}
	}
	if len(val) > cap(c.cur.slab)-len(c.cur.slab) {
		c.cur.slab = make([]byte, 0, max(rowCacheSlab, len(val)))
	}
	n := len(c.cur.slab)
	c.cur.slab = append(c.cur.slab, val...)
	c.cur.rows[ref] = c.cur.slab[n:len(c.cur.slab):len(c.cur.slab)]
	c.cur.bytes += len(val)
}

// cachedRow is a row's stored value as a group wrote it.
type cachedRow struct {
	ref rowRef
	val []byte
}

// readWhole reports whether readers of whole mails read rows of t
// (mailRows in the server): only those are cached.
func readWhole(t model.Table) bool {
	switch t {
	case model.Receive, model.Mail, model.Header, model.Body, model.Received:
		return true
	}
	return false
}

// update replaces the entries of the rows group gen changed: those in
// written (the group's rows of the tables readWhole names, with their new
// values) are put, the others dropped; and it keeps views that started
// before gen from filling. The syncer calls it before it marks gen
// durable.
func (c *rowCache) update(gen uint64, changed []Row, written []cachedRow) {
	if c.max == 0 || len(changed) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped = gen
	for _, r := range changed {
		ref := rowRef{r.Table, r.Key}
		delete(c.cur.rows, ref)
		delete(c.prev.rows, ref)
	}
	for _, w := range written {
		if len(w.val) > c.max/8 {
			continue
		}
		c.put(w.ref, w.val)
	}
}

// stats returns the lookups that found their row, those that did not,
// and the bytes of values held.
func (c *rowCache) stats() (hits, misses uint64, bytes int) {
	c.mu.Lock()
	bytes = c.cur.bytes + c.prev.bytes
	c.mu.Unlock()
	return c.hits.Load(), c.misses.Load(), bytes
}
