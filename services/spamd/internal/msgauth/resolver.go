package msgauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// Resolver is the DNS the checks need: TXT for SPF, DKIM keys and DMARC
// policies, and A/AAAA, MX and PTR for SPF mechanisms (RFC 7208 §5).
// Its method set is the one of *net.Resolver and of spf.DNSResolver, so
// either can be used. Implementations must be safe for concurrent use:
// SPF and DKIM run in parallel.
//
// A not-found answer (NXDOMAIN or no records of the type) must be reported
// as a *net.DNSError with IsNotFound set (possibly wrapped); every other
// error is taken as temporary.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var _ Resolver = (*net.Resolver)(nil)
var _ Resolver = (*NetResolver)(nil)

// ResolverConfig configures a NetResolver. The zero value uses the system
// resolver configuration with the default timeout.
type ResolverConfig struct {
	// Server is the DNS server as "host:port" or "host" (port 53). Empty
	// means the servers of /etc/resolv.conf. Operators point this at a
	// local validating resolver; tests point it at a loopback server.
	Server string
	// Timeout bounds each lookup, retries included. Default 5s.
	Timeout time.Duration
}

const defaultLookupTimeout = 5 * time.Second

func (c ResolverConfig) withDefaults() ResolverConfig {
	if c.Timeout == 0 {
		c.Timeout = defaultLookupTimeout
	}
	if c.Server != "" {
		if _, _, err := net.SplitHostPort(c.Server); err != nil {
			c.Server = net.JoinHostPort(strings.Trim(c.Server, "[]"), "53")
		}
	}
	return c
}

// Validate reports every problem of c at once.
func (c ResolverConfig) Validate() error {
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("msgauth: resolver timeout %v is negative", c.Timeout))
	}
	if c.Server != "" {
		host := c.Server
		if h, _, err := net.SplitHostPort(c.Server); err == nil {
			host = h
		}
		if host == "" {
			errs = append(errs, fmt.Errorf("msgauth: dns server %q has no host", c.Server))
		}
	}
	return errors.Join(errs...)
}

// NetResolver is a Resolver over the Go DNS client (net.Resolver with
// PreferGo), talking to one configured server, with a timeout per lookup.
// It is safe for concurrent use.
type NetResolver struct {
	r       *net.Resolver
	timeout time.Duration
}

// NewNetResolver returns a resolver for cfg. Call cfg.Validate first.
func NewNetResolver(cfg ResolverConfig) *NetResolver {
	cfg = cfg.withDefaults()
	r := &net.Resolver{PreferGo: true}
	if cfg.Server != "" {
		server := cfg.Server
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			// The Go client asks for "udp" first and "tcp" after a truncated
			// answer; both go to the configured server.
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return &NetResolver{r: r, timeout: cfg.Timeout}
}

// fqdn makes name absolute so that resolv.conf's search list is never
// appended: "example.com" must not also be tried as "example.com.corp.lan".
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// LookupTXT returns the TXT records of name, the strings of each record
// concatenated.
func (n *NetResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	return n.r.LookupTXT(ctx, fqdn(name))
}

// LookupIPAddr returns the A and AAAA records of host.
func (n *NetResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	return n.r.LookupIPAddr(ctx, fqdn(host))
}

// LookupMX returns the MX records of name.
func (n *NetResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	return n.r.LookupMX(ctx, fqdn(name))
}

// LookupAddr returns the PTR names of the address addr.
func (n *NetResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	return n.r.LookupAddr(ctx, addr)
}

// errBudget is returned once a Check has used up its lookups.
var errBudget = errors.New("msgauth: dns lookup budget exhausted")

// libResolver sits between a Resolver and the SPF/DKIM/DMARC libraries.
//
// The libraries decide temperror versus permerror by a type assertion on
// an unwrapped *net.DNSError (spf: isTemporary/isNotFound; go-msgauth:
// net.Error.Temporary). An error of any other shape would become a
// permerror in spf, and a "no key" permerror in dkim. The policy here is
// that a DNS failure is never a verdict against the sender, so every
// error is rewritten into a bare *net.DNSError that is either NotFound or
// Temporary. It also enforces the per-Check lookup budget, stops issuing
// lookups once ctx is done, and queries non-ASCII labels as A-labels
// (asciiName): a DKIM d= or an SPF include may be written with U-labels.
type libResolver struct {
	r      Resolver
	budget atomic.Int64
	// used counts lookups made, for tests and logs.
	used atomic.Int64
}

func newLibResolver(r Resolver, budget int) *libResolver {
	l := &libResolver{r: r}
	l.budget.Store(int64(budget))
	return l
}

// begin accounts one lookup, failing when the budget or ctx is gone.
func (l *libResolver) begin(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return temporary(name, err)
	}
	if l.budget.Add(-1) < 0 {
		return temporary(name, errBudget)
	}
	l.used.Add(1)
	return nil
}

func temporary(name string, err error) *net.DNSError {
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

// classify rewrites err as described at libResolver.
func classify(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return temporary(name, err)
}

func (l *libResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = asciiName(name)
	if err := l.begin(ctx, name); err != nil {
		return nil, err
	}
	txt, err := l.r.LookupTXT(ctx, name)
	return txt, classify(name, err)
}

func (l *libResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	host = asciiName(host)
	if err := l.begin(ctx, host); err != nil {
		return nil, err
	}
	ips, err := l.r.LookupIPAddr(ctx, host)
	return ips, classify(host, err)
}

func (l *libResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	name = asciiName(name)
	if err := l.begin(ctx, name); err != nil {
		return nil, err
	}
	mx, err := l.r.LookupMX(ctx, name)
	return mx, classify(name, err)
}

func (l *libResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if err := l.begin(ctx, addr); err != nil {
		return nil, err
	}
	names, err := l.r.LookupAddr(ctx, addr)
	return names, classify(addr, err)
}

// txtFunc adapts LookupTXT to the ctx-less callback of go-msgauth, binding
// the Check's ctx.
func (l *libResolver) txtFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return l.LookupTXT(ctx, name) }
}
