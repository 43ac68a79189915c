package mailcache

import (
	"fmt"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

// Key names a mail's bytes as a session sees them (see the package doc).
type Key struct {
	Mail     model.Key // the mail row: its header and body rows
	Received model.Key // the received row joined in; zero: none
	Drop     string    // the dropped header fields, NUL-separated
}

// KeyOf is the key of bytes joined from o with the header fields drop
// names removed.
func KeyOf(o mailbox.Origin, drop []string) Key {
	return Key{Mail: o.Mail, Received: o.Received, Drop: strings.Join(drop, "\x00")}
}

// Parsed is what a folder listing needs of one mail, derived from its
// bytes once: read-only once added to a Cache. Size and Header are
// always set; Envelope and Structure only once a FETCH asked for them
// (parsing the MIME tree costs more than cutting header fields, which is
// all Thunderbird's listing and a SEARCH on header fields need). The
// envelope can be derived from Header later; the structure needs the
// whole mail.
type Parsed struct {
	Size      int64              // RFC822.SIZE: the bytes' length
	Header    []byte             // the header section, blank line included (mimetree.HeaderLen)
	Envelope  *imap.Envelope     // ENVELOPE; nil: not derived yet
	Structure imap.BodyStructure // BODYSTRUCTURE, extended; nil: not derived yet
}

// Config configures a Cache. Zero values mean the defaults.
type Config struct {
	// ParsedBytes bounds the Parsed entries (estimated heap). 0: none
	// kept.
	ParsedBytes int64
	// BodyBytes is the memory for whole mails kept for BODY[], allocated
	// at once (see ring). 0: none kept.
	BodyBytes int64
	// Metrics receives hits, misses, evictions and bytes; required.
	Metrics *metrics.Metrics
}

// Cache holds Parsed entries and whole mails by Key, each kind within its
// byte budget, least recently used out first. It is safe for concurrent
// use; a nil *Cache caches nothing.
type Cache struct {
	parsed *lru[*Parsed]
	body   *ring
}

// New returns a Cache with cfg's budgets, or nil when both are 0. It
// fails when the memory for whole mails cannot be had.
func New(cfg Config) (*Cache, error) {
	if cfg.ParsedBytes <= 0 && cfg.BodyBytes <= 0 {
		return nil, nil
	}
	body, err := newRing(cfg.BodyBytes, cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("body cache of %d MiB: %w", cfg.BodyBytes>>20, err)
	}
	return &Cache{parsed: newLRU[*Parsed](cfg.ParsedBytes, cfg.Metrics, "parsed"), body: body}, nil
}

// Parsed returns the entry under k, or nil.
func (c *Cache) Parsed(k Key) *Parsed {
	if c == nil {
		return nil
	}
	p, _ := c.parsed.get(k)
	return p
}

// AddParsed keeps p under k; p must not change afterwards. An entry
// already under k and p are merged: the result has every field either
// has (both were derived from the same bytes). It returns the entry kept,
// or p when none is.
func (c *Cache) AddParsed(k Key, p *Parsed) *Parsed {
	if c == nil || p == nil {
		return p
	}
	return c.parsed.add(k, p, ParsedSize(p), mergeParsed)
}

// mergeParsed is an entry with the fields of a and b (of the same bytes).
func mergeParsed(a, b *Parsed) (*Parsed, int64) {
	if (a.Envelope != nil || b.Envelope == nil) && (a.Structure != nil || b.Structure == nil) {
		return a, ParsedSize(a)
	}
	m := *a
	if m.Envelope == nil {
		m.Envelope = b.Envelope
	}
	if m.Structure == nil {
		m.Structure = b.Structure
	}
	return &m, ParsedSize(&m)
}

// WantsParsed reports whether the cache keeps Parsed entries at all.
func (c *Cache) WantsParsed() bool { return c != nil && c.parsed.max > 0 }

// HasBody reports whether the whole mail under k is kept. AppendBody
// may still not find it: another session may drop it in between.
func (c *Cache) HasBody(k Key) bool { return c != nil && c.body.has(k) }

// AppendBody appends the whole mail under k to dst, and reports whether
// it was kept. The bytes are a copy: the cache's memory is reused once a
// mail is dropped.
func (c *Cache) AppendBody(dst []byte, k Key) ([]byte, bool) {
	if c == nil {
		return dst, false
	}
	return c.body.appendTo(dst, k)
}

// KeepBody keeps a copy of raw, a whole mail, under k if it fits the
// budget (at most an eighth of it); raw stays the caller's.
func (c *Cache) KeepBody(k Key, raw []byte) {
	if c == nil {
		return
	}
	c.body.keep(k, raw)
}

// WantsBody reports whether the cache keeps whole mails at all.
func (c *Cache) WantsBody() bool { return c != nil && c.body.arena != nil }

// Reset drops every entry (benchmarks: a cold cache).
func (c *Cache) Reset() {
	if c == nil {
		return
	}
	c.parsed.reset()
	c.body.reset()
}

// Bytes returns the estimated bytes the cache keeps, of both kinds.
func (c *Cache) Bytes() int64 {
	if c == nil {
		return 0
	}
	return c.parsed.bytes() + c.body.bytes()
}

// entryOverhead is charged per entry besides its value: the map slot,
// the list node and the key.
const entryOverhead = 160

// node is one entry of an lru, in its recency list.
type node[V any] struct {
	key        Key
	val        V
	size       int64
	prev, next *node[V]
}

// lru is a map with a byte budget and a recency list: get moves an entry
// to the front, add evicts from the back until the budget holds.
type lru[V any] struct {
	max int64 // the budget; 0: keeps nothing
	// The kind's metrics, looked up once (a lookup by label costs a
	// hash and a lock on every FETCHed mail).
	hits, misses, evictions prometheus.Counter
	gauge                   prometheus.Gauge

	mu    sync.Mutex
	items map[Key]*node[V]
	root  node[V] // sentinel: root.next is the most recently used
	used  int64
}

func newLRU[V any](budget int64, m *metrics.Metrics, kind string) *lru[V] {
	l := &lru[V]{max: max(budget, 0), items: map[Key]*node[V]{},
		hits: m.CacheHits.WithLabelValues(kind), misses: m.CacheMisses.WithLabelValues(kind),
		evictions: m.CacheEvictions.WithLabelValues(kind), gauge: m.CacheBytes.WithLabelValues(kind)}
	l.root.next, l.root.prev = &l.root, &l.root
	return l
}

// fits reports whether an entry of size may be kept: at most an eighth
// of the budget, so one large mail cannot empty the cache.
func (l *lru[V]) fits(size int64) bool { return size <= l.max/8 }

func (l *lru[V]) get(k Key) (v V, ok bool) {
	if l.max == 0 {
		return v, false
	}
	l.mu.Lock()
	n := l.items[k]
	if n != nil {
		l.unlinkLocked(n)
		l.pushFrontLocked(n)
		v, ok = n.val, true
	}
	l.mu.Unlock()
	if ok {
		l.hits.Inc()
	} else {
		l.misses.Inc()
	}
	return v, ok
}

// add keeps v (of size bytes) under k and returns the value kept. When k
// is there already, merge (nil: keep the old value) gives the value to
// keep instead, from the old one and v, and its size: both describe the
// same bytes (same key), so a merge only adds what one of them lacks.
func (l *lru[V]) add(k Key, v V, size int64, merge func(old, v V) (V, int64)) V {
	if l.max == 0 || !l.fits(size) {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.items[k]; old != nil {
		l.unlinkLocked(old)
		l.pushFrontLocked(old)
		if merge == nil {
			return old.val
		}
		mv, msize := merge(old.val, v)
		if !l.fits(msize) {
			return mv
		}
		old.val = mv
		l.used += msize - old.size
		old.size = msize
		l.evictLocked()
		return mv
	}
	n := &node[V]{key: k, val: v, size: size}
	l.items[k] = n
	l.pushFrontLocked(n)
	l.used += size
	l.evictLocked()
	return v
}

// evictLocked drops the least recently used entries until the budget
// holds (the front entry, just used, stays: fits bounds its size).
func (l *lru[V]) evictLocked() {
	evicted := 0
	for l.used > l.max && l.root.prev != l.root.next {
		last := l.root.prev
		l.unlinkLocked(last)
		delete(l.items, last.key)
		l.used -= last.size
		evicted++
	}
	if evicted > 0 {
		l.evictions.Add(float64(evicted))
	}
	l.gauge.Set(float64(l.used))
}

func (l *lru[V]) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.items)
	l.root.next, l.root.prev = &l.root, &l.root
	l.used = 0
	l.gauge.Set(0)
}

func (l *lru[V]) bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}

func (l *lru[V]) unlinkLocked(n *node[V]) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

func (l *lru[V]) pushFrontLocked(n *node[V]) {
	n.prev, n.next = &l.root, l.root.next
	l.root.next.prev = n
	l.root.next = n
}
