package mailbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// DefaultLoginCacheTTL is how long a password argon2id confirmed is
// taken again without a new check, unless the caller chooses.
const DefaultLoginCacheTTL = 10 * time.Minute

// DefaultLoginCacheSize bounds the logins the cache remembers.
const DefaultLoginCacheSize = 10000

// loginCache remembers the passwords argon2id confirmed in the last ttl,
// so the next login with the same password skips the check: mail clients
// log in again and again (a POP3 client every poll, an IMAP client with
// several connections at once), and each argon2id check costs about 150
// ms of a core and 64 MiB of memory (passwd.Default). Only successes are
// kept: a wrong password is always checked in full, so guessing is as
// slow as without the cache.
//
// What is kept is an HMAC-SHA256 of the password under a key drawn when
// the process starts, never stored or sent anywhere, filed under the
// account and the PHC string it was checked against: a changed password (a
// new hash in dbd) misses the cache, and Login reads the account and its
// hash from dbd before it asks the cache, so a deleted account or a
// removed password fails as before.
type loginCache struct {
	ttl time.Duration
	max int
	now func() time.Time
	key [32]byte

	mu      sync.Mutex
	entries map[loginCacheKey]loginEntry
}

// loginCacheKey is the account row and the PHC string checked.
type loginCacheKey struct {
	account model.Key
	hash    string
}

type loginEntry struct {
	mac     [sha256.Size]byte
	expires time.Time
}

// newLoginCache returns a cache of at most size logins kept for ttl; nil
// (no cache) when ttl or size is not positive.
func newLoginCache(ttl time.Duration, size int, now func() time.Time) *loginCache {
	if ttl <= 0 || size <= 0 {
		return nil
	}
	c := &loginCache{ttl: ttl, max: size, now: now, entries: map[loginCacheKey]loginEntry{}}
	rand.Read(c.key[:]) // never fails (crypto/rand since Go 1.24)
	return c
}

func (c *loginCache) mac(password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(password))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// ok reports whether password was confirmed for account against hash
// within the last ttl.
func (c *loginCache) ok(account model.Key, hash, password string) bool {
	if c == nil {
		return false
	}
	mac := c.mac(password)
	c.mu.Lock()
	e, found := c.entries[loginCacheKey{account, hash}]
	c.mu.Unlock()
	return found && c.now().Before(e.expires) && hmac.Equal(e.mac[:], mac[:])
}

// add remembers that argon2id confirmed password for account against
// hash. A full cache first drops its expired entries, then, if still
// full, any one entry: that login is checked in full next time.
func (c *loginCache) add(account model.Key, hash, password string) {
	if c == nil {
		return
	}
	e := loginEntry{mac: c.mac(password), expires: c.now().Add(c.ttl)}
	k := loginCacheKey{account, hash}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, found := c.entries[k]; !found && len(c.entries) >= c.max {
		now := c.now()
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[k] = e
}
