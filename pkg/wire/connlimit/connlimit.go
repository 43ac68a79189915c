// Package connlimit admits a server's connections within two limits: open
// connections in total, and per client (an IPv4 address or an IPv6 /64,
// as Rate counts them). smtpd, pop3d and imapd each
// admit every accepted connection through one Limiter, so a flood from one
// address (or from everywhere) is refused at the door instead of holding
// goroutines, buffers and dbd streams.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Refusal says which limit refused a connection.
type Refusal int

const (
	Admitted      Refusal = iota
	TooMany               // the total limit
	TooManyFromIP         // the per-IP limit
)

// Limiter counts admitted connections. It is safe for concurrent use.
type Limiter struct {
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

// New returns a Limiter for at most max connections in total and perIP
// from one client; a limit of zero or less is no limit. A client is an
// IPv4 address or an IPv6 /64 (see Rate): an IPv6 host usually holds a
// whole /64, and counted by address it could open perIP connections from
// each of its 2^64 addresses, which is no per-client limit at all.
func New(max, perIP int) *Limiter {
	return &Limiter{max: max, perIP: perIP, byIP: map[netip.Addr]int{}}
}

// Admit takes a slot for a connection from ip, counted for its client (see
// New). If it is admitted, release gives the slot back (call it once, when
// the connection ends; later calls do nothing); otherwise release is nil
// and why names the limit.
func (l *Limiter) Admit(ip netip.Addr) (release func(), why Refusal) {
	ip = rateClient(ip.Unmap())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return nil, TooMany
	}
	if l.perIP > 0 && l.byIP[ip] >= l.perIP {
		return nil, TooManyFromIP
	}
	l.total++
	l.byIP[ip]++
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, Admitted
}

func (l *Limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip] <= 1 {
		delete(l.byIP, ip)
	} else {
		l.byIP[ip]--
	}
}

// Active returns the number of admitted connections not yet released.
func (l *Limiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// IP returns the client address of a connection's remote address (IPv4 as
// IPv4, not as an IPv4-mapped IPv6 address), or the zero Addr when a is
// not an IP address (a pipe in a test): such connections share one slot
// count.
func IP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
