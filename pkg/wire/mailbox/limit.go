package mailbox

import (
	"net/netip"
	"sync"
	"time"
)

// AuthLimiter remembers failed logins per client IP for a window, so a
// server (pop3d, imapd) can refuse an address that guesses passwords. An
// IPv6 client is counted by its /64 (limitKey).
// Safe for concurrent use. Memory is bounded: at most max times per IP, and IPs
// whose failures all expired are dropped whenever the map doubles.
type AuthLimiter struct {
	max    int // < 0: no limit
	window time.Duration

	mu struct {
		sync.Mutex
		fails map[netip.Addr][]time.Time
		prune int // prune the map when it reaches this size
	}
}

// NewAuthLimiter returns a limiter that blocks an IP after max failures
// within window (max < 0: never).
func NewAuthLimiter(max int, window time.Duration) *AuthLimiter {
	l := &AuthLimiter{max: max, window: window}
	l.mu.fails = map[netip.Addr][]time.Time{}
	l.mu.prune = 1024
	return l
}

// Blocked reports whether ip has max failures within the window before now.
func (l *AuthLimiter) Blocked(ip netip.Addr, now time.Time) bool {
	if l.max < 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recentLocked(limitKey(ip), now)) >= l.max
}

// Fail records a failed login from ip at now.
func (l *AuthLimiter) Fail(ip netip.Addr, now time.Time) {
	if l.max < 0 {
		return
	}
	ip = limitKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := append(l.recentLocked(ip, now), now)
	if len(ts) > l.max {
		ts = ts[len(ts)-l.max:]
	}
	l.mu.fails[ip] = ts
	if len(l.mu.fails) >= l.mu.prune {
		for k := range l.mu.fails {
			l.recentLocked(k, now)
		}
		l.mu.prune = max(1024, 2*len(l.mu.fails))
	}
}

// limitKey is the address failures from ip count under: an IPv4 address
// itself, an IPv6 address's /64 network. An IPv6 host usually has a whole
// /64 to draw addresses from (SLAAC, RFC 8981 temporary addresses), so
// counting each address apart let one client guess without limit by
// changing address between guesses. (Dovecot's auth penalty masks IPv6
// to /48; a /64 is one site's subnet, so a client locks out at most its
// own network's neighbours, and only until its failures expire.)
func limitKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// recentLocked drops ip's expired failures and returns the rest.
// REQUIRES: l.mu held.
func (l *AuthLimiter) recentLocked(ip netip.Addr, now time.Time) []time.Time {
	ts := l.mu.fails[ip]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.mu.fails, ip)
		return nil
	}
	l.mu.fails[ip] = ts
	return ts
}
