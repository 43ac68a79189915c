package wire

import (
	"errors"
	"sync"
	"time"
)

// Replay cache defaults.
const (
	// DefaultReplayEntries is the capacity NewReplayCache uses for max <= 0.
	// An entry costs about 100 bytes, so the default is about 6 MiB and
	// admits 270 handshakes per second sustained with a 4-minute TTL.
	DefaultReplayEntries = 1 << 16
)

var (
	errReplayed    = errors.New("wire: ephemeral key already seen")
	errReplayFull  = errors.New("wire: replay cache full")
	errReplayShort = errors.New("wire: replay cache TTL shorter than twice the clock window")
)

// ReplayCache remembers the client ephemeral keys of recent handshakes so a
// recorded first handshake message cannot be replayed while its timestamp is
// still inside the clock window (SPEC §4; Noise §7.7: IK message 1 is
// replayable). One cache is shared by all connections of one server. It is
// safe for concurrent use.
//
// Each key lives for the TTL given to NewReplayCache, which must be at least
// twice the server's clock window: a message stamped t is accepted until
// t+Window, and it may first have been seen as early as t-Window.
//
// The cache is bounded. When it holds max live entries it refuses new
// handshakes (Reason "busy") instead of evicting a live entry, because
// evicting one would reopen a replay hole; expired entries are dropped
// first. Only messages from authorised keys with a fresh timestamp reach the
// cache, so only a misbehaving authorised client or a handshake rate above
// max/TTL can fill it.
type ReplayCache struct {
	ttl time.Duration
	max int

	mu   sync.Mutex
	seen map[PublicKey]time.Time // ephemeral key -> expiry
	// fifo holds the entries in insertion order, which is expiry order as
	// long as the clock does not step back; fifo[head:] are live.
	fifo []replayEntry
	head int
}

type replayEntry struct {
	e      PublicKey
	expiry time.Time
}

// NewReplayCache returns an empty cache whose entries live for ttl and that
// holds at most max entries. A ttl <= 0 means 4 minutes (twice the default
// window); a max <= 0 means DefaultReplayEntries.
func NewReplayCache(ttl time.Duration, max int) *ReplayCache {
	if ttl <= 0 {
		ttl = 2 * DefaultWindow
	}
	if max <= 0 {
		max = DefaultReplayEntries
	}
	return &ReplayCache{ttl: ttl, max: max, seen: make(map[PublicKey]time.Time)}
}

// TTL returns how long an entry lives.
func (c *ReplayCache) TTL() time.Duration { return c.ttl }

// Len returns the number of entries held, including expired ones not yet
// dropped.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// admit records e as seen at now. It returns errReplayed if e is already
// recorded and not expired, and errReplayFull if the cache holds max live
// entries.
func (c *ReplayCache) admit(e PublicKey, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if exp, ok := c.seen[e]; ok && live(exp, now) {
		return errReplayed
	}
	if len(c.seen) >= c.max {
		c.sweepLocked(now)
		if len(c.seen) >= c.max {
			return errReplayFull
		}
	}
	exp := now.Add(c.ttl)
	c.seen[e] = exp
	c.fifo = append(c.fifo, replayEntry{e, exp})
	return nil
}

// live reports whether an entry with this expiry still counts at now. The
// expiry instant itself is included: the clock window is inclusive
// (±Window), so a message first accepted at t-Window, whose entry expires
// at exactly t+Window, is still acceptable by its timestamp at t+Window,
// and only the entry refuses the replay then.
func live(expiry, now time.Time) bool { return !now.After(expiry) }

// expireLocked drops the expired entries at the front of the queue.
// REQUIRES: c.mu held.
func (c *ReplayCache) expireLocked(now time.Time) {
	for c.head < len(c.fifo) && !live(c.fifo[c.head].expiry, now) {
		ent := c.fifo[c.head]
		// The key may have been re-admitted later (only possible if it
		// had expired); then the map holds the newer expiry.
		if exp, ok := c.seen[ent.e]; ok && exp.Equal(ent.expiry) {
			delete(c.seen, ent.e)
		}
		c.fifo[c.head] = replayEntry{}
		c.head++
	}
	if c.head > 0 && c.head*2 >= len(c.fifo) {
		n := copy(c.fifo, c.fifo[c.head:])
		clear(c.fifo[n:])
		c.fifo = c.fifo[:n]
		c.head = 0
	}
}

// sweepLocked drops every expired entry, wherever it sits in the queue. It
// matters only if the clock stepped back, so that the queue is not in expiry
// order; it runs only when the cache is full.
// REQUIRES: c.mu held.
func (c *ReplayCache) sweepLocked(now time.Time) {
	kept := c.fifo[:0]
	for _, ent := range c.fifo[c.head:] {
		exp, ok := c.seen[ent.e]
		switch {
		case !ok || !exp.Equal(ent.expiry):
			// superseded by a later entry for the same key
		case !live(exp, now):
			delete(c.seen, ent.e)
		default:
			kept = append(kept, ent)
		}
	}
	clear(c.fifo[len(kept):])
	c.fifo = kept
	c.head = 0
}
