package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"testing"
)

func TestLimits(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	l := New(3, 2)
	ra1, why := l.Admit(a)
	if why != Admitted {
		t.Fatal("first connection refused")
	}
	ra2, _ := l.Admit(a)
	if _, why := l.Admit(a); why != TooManyFromIP {
		t.Fatalf("third from one IP: %v, want TooManyFromIP", why)
	}
	rb1, why := l.Admit(b)
	if why != Admitted {
		t.Fatal("other IP refused")
	}
	if _, why := l.Admit(netip.MustParseAddr("192.0.2.9")); why != TooMany {
		t.Fatalf("fourth in all: %v, want TooMany", why)
	}
	ra1()
	ra1() // a second release gives back nothing more
	if n := l.Active(); n != 2 {
		t.Fatalf("Active = %d after one release, want 2", n)
	}
	if _, why := l.Admit(a); why != Admitted {
		t.Fatal("a freed slot was not given again")
	}
	if _, why := l.Admit(a); why != TooMany {
		t.Fatalf("a fourth in all after the release: %v, want TooMany", why)
	}
	ra2()
	rb1()
	if n := l.Active(); n != 1 {
		t.Fatalf("Active = %d, want 1", n)
	}
}

func TestNoLimits(t *testing.T) {
	l := New(0, -1)
	ip := netip.MustParseAddr("127.0.0.1")
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			release, why := l.Admit(ip)
			if why != Admitted {
				t.Error("refused without limits")
				return
			}
			release()
		})
	}
	wg.Wait()
	if n := l.Active(); n != 0 {
		t.Fatalf("Active = %d after all released", n)
	}
}

func TestIP(t *testing.T) {
	for _, c := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25}, "192.0.2.1"}, // ParseIP gives the 16-byte form
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 25}, "::1"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, "invalid IP"},
		{nil, "invalid IP"},
	} {
		if got := IP(c.a).String(); got != c.want {
			t.Errorf("IP(%v) = %s, want %s", c.a, got, c.want)
		}
	}
}

// TestPerIPv6Network: the per-client limit counts an IPv6 client by its
// /64, as Rate does, so a host cannot open perIP connections from each
// address of its /64; another /64 and IPv4 keep their own counts, and
// releases give the /64's slots back.
func TestPerIPv6Network(t *testing.T) {
	l := New(0, 2)
	var releases []func()
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"} {
		release, why := l.Admit(netip.MustParseAddr(a))
		if why != Admitted {
			t.Fatalf("%s: %v, want Admitted", a, why)
		}
		releases = append(releases, release)
	}
	if _, why := l.Admit(netip.MustParseAddr("2001:db8:1:2:abcd::3")); why != TooManyFromIP {
		t.Fatalf("third address of the same /64: %v, want TooManyFromIP", why)
	}
	if _, why := l.Admit(netip.MustParseAddr("2001:db8:1:3::1")); why != Admitted {
		t.Fatalf("another /64: %v, want Admitted", why)
	}
	// An IPv4-mapped address is the IPv4 client, not an IPv6 /64.
	for range 2 {
		if _, why := l.Admit(netip.MustParseAddr("::ffff:192.0.2.1")); why != Admitted {
			t.Fatalf("IPv4-mapped: %v, want Admitted", why)
		}
	}
	if _, why := l.Admit(netip.MustParseAddr("192.0.2.1")); why != TooManyFromIP {
		t.Fatalf("IPv4 after two mapped: %v, want TooManyFromIP", why)
	}
	for _, r := range releases {
		r()
	}
	if _, why := l.Admit(netip.MustParseAddr("2001:db8:1:2::77")); why != Admitted {
		t.Fatalf("after the releases: %v, want Admitted", why)
	}
}
