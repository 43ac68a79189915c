package connlimit

import (
	"net/netip"
	"sync"
	"time"
)

// Rate limits how often one client may connect: at most n connections in
// a window from one client, counted in fixed windows that start at the
// client's first connection (the way Postfix's anvil counts for
// smtpd_client_connection_rate_limit). The concurrency limits of Limiter
// do not stop a client that opens and closes connections as fast as it
// can; each of those still costs a greeting, a goroutine and a capture.
//
// A client is an IPv4 address or an IPv6 /64: one IPv6 host usually
// holds a whole /64 and could otherwise take a fresh address for every
// connection. Addresses in the exempt prefixes are never limited.
//
// At most maxTracked clients are counted at once. When that many have
// connected within one window (a botnet, not a single abuser), new
// clients are admitted uncounted rather than refused: the concurrency
// limits still hold, and honest clients are not shut out.
//
// Refused attempts count too, so a client that keeps hammering stays
// refused until its window ends. Rate is safe for concurrent use.
type Rate struct {
	n       int
	window  time.Duration
	exempt  []netip.Prefix
	clock   func() time.Time
	tracked int

	mu        sync.Mutex
	seen      map[netip.Addr]*rateWindow
	lastSweep time.Time
}

type rateWindow struct {
	start time.Time
	count int
}

// DefaultRateTracked is the number of clients a Rate counts at once.
const DefaultRateTracked = 100000

// NewRate returns a Rate admitting n connections per window from one
// client (n ≤ 0: no limit). clock supplies the time (nil: time.Now).
func NewRate(n int, window time.Duration, exempt []netip.Prefix, clock func() time.Time) *Rate {
	if clock == nil {
		clock = time.Now
	}
	return &Rate{
		n: n, window: window, exempt: exempt, clock: clock, tracked: DefaultRateTracked,
		seen: map[netip.Addr]*rateWindow{},
	}
}

// Verdict says what Allow decided.
type Verdict int

const (
	RateOK       Verdict = iota
	RateExceeded         // over the limit; the first refusal of the window
	RateRefused          // over the limit, refused before in this window
)

// Allow counts a connection from ip and says whether it is within the
// limit. RateExceeded marks the first refusal of a client's window, so a
// caller can log once per window instead of once per connection of a
// flood.
func (r *Rate) Allow(ip netip.Addr) Verdict {
	if r.n <= 0 {
		return RateOK
	}
	for _, p := range r.exempt {
		if p.Contains(ip) {
			return RateOK
		}
	}
	client := rateClient(ip)
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.seen[client]
	if ok && now.Sub(w.start) >= r.window {
		w.start, w.count = now, 0
	}
	if !ok {
		if len(r.seen) >= r.tracked {
			r.sweep(now)
		}
		if len(r.seen) >= r.tracked {
			return RateOK
		}
		w = &rateWindow{start: now}
		r.seen[client] = w
	}
	w.count++
	switch {
	case w.count <= r.n:
		return RateOK
	case w.count == r.n+1:
		return RateExceeded
	default:
		return RateRefused
	}
}

// sweep forgets clients whose window has ended. It runs only when the map
// is full, and at most once a second: a full map of live windows would
// otherwise cost a scan on every new client.
func (r *Rate) sweep(now time.Time) {
	if now.Sub(r.lastSweep) < time.Second {
		return
	}
	r.lastSweep = now
	for c, w := range r.seen {
		if now.Sub(w.start) >= r.window {
			delete(r.seen, c)
		}
	}
}

// Tracked returns the number of clients being counted.
func (r *Rate) Tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// rateClient maps an address to the client it counts for: IPv4 addresses
// alone, IPv6 addresses by their /64.
func rateClient(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, err := ip.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Loopback returns the default exemption of servers: connections from the
// host itself (a local relay, monitoring, benchmarks).
func Loopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}
