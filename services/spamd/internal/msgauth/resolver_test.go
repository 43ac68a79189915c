package msgauth

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestResolverConfig(t *testing.T) {
	tests := []struct {
		name       string
		in         ResolverConfig
		wantServer string
		wantErr    string
	}{
		{"zero", ResolverConfig{}, "", ""},
		{"host only", ResolverConfig{Server: "127.0.0.1"}, "127.0.0.1:53", ""},
		{"ipv6 host", ResolverConfig{Server: "[::1]"}, "[::1]:53", ""},
		{"host and port", ResolverConfig{Server: "127.0.0.1:5353"}, "127.0.0.1:5353", ""},
		{"no host", ResolverConfig{Server: ":53"}, ":53", "has no host"},
		{"negative timeout", ResolverConfig{Timeout: -time.Second}, "", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate(%+v) = %v, want error containing %q", tt.in, err, tt.wantErr)
			}
			if got := tt.in.withDefaults().Server; got != tt.wantServer {
				t.Errorf("withDefaults(%+v).Server = %q, want %q", tt.in, got, tt.wantServer)
			}
		})
	}
}

func TestNetResolverLookups(t *testing.T) {
	z := newTestZone()
	z.TXT("big.test", strings.Repeat("k", 600))
	z.A("host.test", "192.0.2.7")
	z.MX("host.test", "mx.host.test")
	z.ServFail("broken.test")
	srv := startDNS(t, z)
	r := NewNetResolver(ResolverConfig{Server: srv.Addr, Timeout: 2 * time.Second})
	ctx := t.Context()

	txt, err := r.LookupTXT(ctx, "big.test")
	if err != nil || len(txt) != 1 || len(txt[0]) != 600 {
		t.Errorf("LookupTXT(big.test) = %d records, %v; want one of 600 bytes", len(txt), err)
	}
	ips, err := r.LookupIPAddr(ctx, "host.test")
	if err != nil || len(ips) != 1 || !ips[0].IP.Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("LookupIPAddr(host.test) = %v, %v; want 192.0.2.7", ips, err)
	}
	mx, err := r.LookupMX(ctx, "host.test")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.host.test." {
		t.Errorf("LookupMX(host.test) = %v, %v; want mx.host.test.", mx, err)
	}
	var de *net.DNSError
	if _, err := r.LookupTXT(ctx, "absent.test"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("LookupTXT(absent.test) error = %v, want not found", err)
	}

	// Through the library adapter, SERVFAIL and "not found" keep their
	// meaning, and an error of any other shape becomes temporary.
	lr := newLibResolver(r, 10)
	if _, err := lr.LookupTXT(ctx, "broken.test"); !isTemp(err) {
		t.Errorf("adapter LookupTXT(broken.test) error = %#v, want temporary *net.DNSError", err)
	}
	if _, err := lr.LookupTXT(ctx, "absent.test"); !isNotFound(err) {
		t.Errorf("adapter LookupTXT(absent.test) error = %#v, want not-found *net.DNSError", err)
	}
	odd := newLibResolver(errResolver{errors.New("disk on fire")}, 10)
	if _, err := odd.LookupMX(ctx, "x.test"); !isTemp(err) {
		t.Errorf("adapter of odd error = %#v, want temporary *net.DNSError", err)
	}
	spent := newLibResolver(r, 0)
	if _, err := spent.LookupTXT(ctx, "big.test"); !isTemp(err) {
		t.Errorf("adapter past budget = %#v, want temporary *net.DNSError", err)
	}
}

// isTemp and isNotFound check the exact shape the libraries assert on: a
// bare *net.DNSError, not a wrapped one.
func isTemp(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.Temporary() && !de.IsNotFound
}

func isNotFound(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.IsNotFound && !de.Temporary()
}

type errResolver struct{ err error }

func (e errResolver) LookupTXT(context.Context, string) ([]string, error)        { return nil, e.err }
func (e errResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) { return nil, e.err }
func (e errResolver) LookupMX(context.Context, string) ([]*net.MX, error)        { return nil, e.err }
func (e errResolver) LookupAddr(context.Context, string) ([]string, error)       { return nil, e.err }
