package mailcache

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

// ring keeps whole mails in one arena of fixed size, written as a
// circular log: a mail is copied in at the head, and the oldest mails
// the head runs over are dropped (first in, first out). Its memory is
// allocated and faulted in once, at start (see fault), in huge pages on
// Linux (arena_linux.go), and reused for ever: filling the cache during
// a FETCH grows no memory, which was most of what caching a FETCH of
// the corpus cost when the cache kept the read-ahead's buffers
// (docs/imapd.md "Body cache").
//
// Readers copy a mail out under the read lock: the arena's bytes are
// overwritten once they are dropped, so no slice of it leaves the ring.
// A read does not move a mail (that would be a copy under the write
// lock on every hit); a mail read often is dropped like any other when
// the head comes round, and read from dbd and kept again next time.
type ring struct {
	hits, misses, evictions prometheus.Counter
	gauge                   prometheus.Gauge

	arena []byte // nil: keeps nothing

	mu    sync.RWMutex
	spans map[Key]span
	queue []queued // in the order written: queue[first] is the oldest
	first int      // the oldest entry's index in queue
	head  int      // where the next mail is written
	used  int64    // bytes of the mails kept
}

type span struct{ off, n int }

type queued struct {
	key Key
	span
}

func newRing(budget int64, m *metrics.Metrics) (*ring, error) {
	r := &ring{spans: map[Key]span{},
		hits: m.CacheHits.WithLabelValues("body"), misses: m.CacheMisses.WithLabelValues("body"),
		evictions: m.CacheEvictions.WithLabelValues("body"), gauge: m.CacheBytes.WithLabelValues("body")}
	if budget > maxArena {
		return nil, fmt.Errorf("over the %d MiB a ring can index", maxArena>>20)
	}
	if budget > 0 {
		var free func()
		var err error
		if r.arena, free, err = newArena(int(budget)); err != nil {
			return nil, err
		}
		fault(r.arena)
		if free != nil {
			// Tests and benchmarks make many caches; imapd makes one
			// and keeps it.
			runtime.AddCleanup(r, func(free func()) { free() }, free)
		}
	}
	return r, nil
}

// fault writes to every page of arena, so the kernel gives it memory
// now, at start, and not during the first FETCH that fills the cache.
// On a virtual machine the first touch of memory the guest never used
// costs far more than the copy into it: in the project's benchmark
// (docs/imapd.md "Body cache"), zeroing the huge pages that a cold FETCH
// of the corpus touched was about 83 ms of imapd's CPU (perf), where
// faulting 32 MiB in at start takes 3–16 ms. The arena then counts in
// imapd's resident memory from the start: it is the memory the operator
// gave the cache.
func fault(arena []byte) {
	for i := 0; i < len(arena); i += 4096 {
		arena[i] = 0
	}
}

// maxArena bounds the arena to what an int indexes on a 32-bit build.
const maxArena = math.MaxInt32

// fits reports whether a mail of n bytes may be kept: at most an eighth
// of the arena, so one large mail cannot empty the cache.
func (r *ring) fits(n int) bool { return n > 0 && n <= len(r.arena)/8 }

// has reports whether the mail under k is kept, counting a hit or a
// miss.
func (r *ring) has(k Key) bool {
	if r.arena == nil {
		return false
	}
	r.mu.RLock()
	_, ok := r.spans[k]
	r.mu.RUnlock()
	if ok {
		r.hits.Inc()
	} else {
		r.misses.Inc()
	}
	return ok
}

// appendTo appends the mail under k to dst; ok is false when it is not
// kept (any more).
func (r *ring) appendTo(dst []byte, k Key) (_ []byte, ok bool) {
	if r.arena == nil {
		return dst, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.spans[k]
	if !ok {
		return dst, false
	}
	dst = append(dst, r.arena[s.off:s.off+s.n]...)
	runtime.KeepAlive(r) // the arena is unmapped once r is unreachable
	return dst, true
}

// keep copies raw in under k unless it is kept already or too large.
func (r *ring) keep(k Key, raw []byte) {
	if r.arena == nil || !r.fits(len(raw)) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.spans[k]; ok {
		return
	}
	n := len(raw)
	evicted := 0
	if r.head+n > len(r.arena) {
		// No room before the end: the mails between the head and the
		// end, the oldest, are dropped and the head goes round.
		evicted += r.dropWhile(func(s span) bool { return s.off >= r.head })
		r.head = 0
	}
	// The mails still at or after the head are those of the last lap;
	// drop the ones the new mail overwrites.
	end := r.head + n
	evicted += r.dropWhile(func(s span) bool { return s.off >= r.head && s.off < end })
	copy(r.arena[r.head:end], raw)
	runtime.KeepAlive(r)
	s := span{off: r.head, n: n}
	r.spans[k] = s
	r.queue = append(r.queue, queued{key: k, span: s})
	r.head = end
	r.used += int64(n)
	if evicted > 0 {
		r.evictions.Add(float64(evicted))
	}
	r.gauge.Set(float64(r.used))
}

// dropWhile drops the oldest entries while drop says so, and returns
// how many it dropped.
func (r *ring) dropWhile(drop func(span) bool) int {
	n := 0
	for r.first < len(r.queue) && drop(r.queue[r.first].span) {
		q := r.queue[r.first]
		r.queue[r.first] = queued{}
		r.first++
		delete(r.spans, q.key)
		r.used -= int64(q.n)
		n++
	}
	// Move the live entries to the front once the dropped ones are
	// half the slice, so the queue's memory stays bounded.
	if r.first > 0 && r.first >= len(r.queue)/2 {
		live := copy(r.queue, r.queue[r.first:])
		clear(r.queue[live:])
		r.queue = r.queue[:live]
		r.first = 0
	}
	return n
}

func (r *ring) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.spans)
	clear(r.queue)
	r.queue, r.first, r.head, r.used = r.queue[:0], 0, 0, 0
	r.gauge.Set(0)
}

func (r *ring) bytes() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.used
}
