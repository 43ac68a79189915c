package guard

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/connlimit"
)

// Listener wraps a net.Listener: Accept enforces the connection limits and
// returns *Conn values. It owns the pass cache of the greeting test. It is
// safe for concurrent use; the caller must call Close.
type Listener struct {
	inner net.Listener
	cfg   Config
	pass  *passCache

	conns  *connlimit.Limiter
	rate   *connlimit.Rate
	nextID atomic.Uint64
	bufs   sync.Pool // of *connBufs
}

var _ net.Listener = (*Listener)(nil)

// NewListener wraps inner. It validates cfg and applies its defaults.
func NewListener(inner net.Listener, cfg Config) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Listener{
		inner: inner,
		cfg:   cfg,
		pass:  newPassCache(cfg.PassCacheTTL, cfg.PassCacheMax, cfg.Clock),
	}
	l.conns = connlimit.New(cfg.MaxConns, cfg.MaxConnsPerIP)
	l.rate = connlimit.NewRate(cfg.MaxConnRate, cfg.ConnRateWindow, cfg.ConnRateExempt, cfg.Clock)
	return l, nil
}

// Accept waits for the next connection within the limits and returns it as
// a *Conn. A connection over a limit gets a 421 reply and is closed here;
// Accept then keeps waiting. Errors of the inner listener are returned
// unchanged so that the server's retry logic sees them.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		ip := connlimit.IP(raw.RemoteAddr())
		// The rate is checked first: a connection refused for it takes
		// no slot of the concurrency limits.
		if v := l.rate.Allow(ip); v != connlimit.RateOK {
			l.cfg.OnRefuse("conn-rate")
			if v == connlimit.RateExceeded {
				// Once per client and window: a flood must not flood the log.
				l.cfg.Logger.Warn("connection rate limit reached; refusing this client until its window ends",
					"remote", ip, "limit", l.cfg.MaxConnRate, "window", l.cfg.ConnRateWindow)
			}
			l.reply(raw, fmt.Sprintf("421 4.7.0 %s Too many connections from your address in a short time, try later\r\n", l.cfg.Hostname))
			continue
		}
		release, why := l.conns.Admit(ip)
		switch why {
		case connlimit.TooMany:
			l.cfg.OnRefuse("conn-limit")
			l.refuse(raw, ip, fmt.Sprintf("421 4.3.2 %s Too busy, try later\r\n", l.cfg.Hostname))
			continue
		case connlimit.TooManyFromIP:
			l.cfg.OnRefuse("conn-limit-ip")
			l.refuse(raw, ip, fmt.Sprintf("421 4.7.0 %s Too many connections from your address\r\n", l.cfg.Hostname))
			continue
		}
		return newConn(raw, connParams{
			cfg:     &l.cfg,
			id:      l.nextID.Add(1),
			ip:      ip,
			pass:    l.pass,
			release: release,
			bufs:    &l.bufs,
		}), nil
	}
}

// refuse logs and answers a connection over a concurrency limit.
func (l *Listener) refuse(raw net.Conn, ip netip.Addr, reply string) {
	l.cfg.Logger.Warn("connection refused", "remote", ip, "reply", reply[:len(reply)-2])
	l.reply(raw, reply)
}

// reply writes reply to a connection refused at the door and closes it.
// The socket is fresh, so the short reply fits its send buffer; the
// deadline only guards against a broken kernel state and keeps Accept from
// blocking.
func (l *Listener) reply(raw net.Conn, reply string) {
	_ = raw.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = raw.Write([]byte(reply))
	_ = raw.Close()
}

// Active returns the number of connections holding a slot.
func (l *Listener) Active() int { return l.conns.Active() }

// Close closes the inner listener. Accepted Conns stay open.
func (l *Listener) Close() error { return l.inner.Close() }

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// passCache remembers client IPs that passed the greeting test. It is
// bounded: insertion order is kept in a queue and the oldest entries are
// evicted first. It is safe for concurrent use.
type passCache struct {
	ttl   time.Duration
	max   int
	clock func() time.Time

	mu    sync.Mutex
	until map[netip.Addr]time.Time
	queue []passEntry // insertion order; may hold stale duplicates
}

type passEntry struct {
	ip    netip.Addr
	until time.Time
}

func newPassCache(ttl time.Duration, max int, clock func() time.Time) *passCache {
	return &passCache{ttl: ttl, max: max, clock: clock, until: make(map[netip.Addr]time.Time)}
}

// passed reports whether ip passed the test within the TTL.
func (p *passCache) passed(ip netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.until[ip]
	return ok && p.clock().Before(u)
}

// add records that ip passed the test now.
func (p *passCache) add(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	u := now.Add(p.ttl)
	p.until[ip] = u
	p.queue = append(p.queue, passEntry{ip, u})
	// Drop expired and stale entries from the front, then evict the
	// oldest live ones while over the bound. The TTL is constant, so the
	// queue is ordered by expiry.
	for len(p.queue) > 0 {
		e := p.queue[0]
		cur, ok := p.until[e.ip]
		stale := !ok || !cur.Equal(e.until)
		switch {
		case stale:
		case !now.Before(e.until) || len(p.until) > p.max:
			delete(p.until, e.ip)
		default:
			return
		}
		p.queue[0] = passEntry{}
		p.queue = p.queue[1:]
	}
}
