package connlimit

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestRateWindow(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	r := NewRate(3, time.Minute, nil, clk.Now)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if v := r.Allow(a); v != RateOK {
			t.Fatalf("connection %d: %v, want RateOK", i+1, v)
		}
	}
	if v := r.Allow(a); v != RateExceeded {
		t.Fatalf("fourth: %v, want RateExceeded", v)
	}
	if v := r.Allow(a); v != RateRefused {
		t.Fatalf("fifth: %v, want RateRefused", v)
	}
	if v := r.Allow(b); v != RateOK {
		t.Fatalf("another address: %v, want RateOK", v)
	}
	clk.now = clk.now.Add(59 * time.Second)
	if v := r.Allow(a); v != RateRefused {
		t.Fatalf("within the window: %v, want RateRefused", v)
	}
	clk.now = clk.now.Add(time.Second)
	if v := r.Allow(a); v != RateOK {
		t.Fatalf("after the window: %v, want RateOK", v)
	}
}

func TestRateIPv6ByPrefix(t *testing.T) {
	r := NewRate(2, time.Minute, nil, nil)
	for i := range 2 {
		if v := r.Allow(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))); v != RateOK {
			t.Fatalf("connection %d: %v", i+1, v)
		}
	}
	// A third address of the same /64 is the same client.
	if v := r.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")); v != RateExceeded {
		t.Fatalf("same /64: %v, want RateExceeded", v)
	}
	if v := r.Allow(netip.MustParseAddr("2001:db8:1:3::1")); v != RateOK {
		t.Fatalf("next /64: %v, want RateOK", v)
	}
}

func TestRateExemptAndOff(t *testing.T) {
	r := NewRate(1, time.Minute, Loopback(), nil)
	for _, ip := range []string{"127.0.0.1", "127.9.9.9", "::1"} {
		for range 5 {
			if v := r.Allow(netip.MustParseAddr(ip)); v != RateOK {
				t.Fatalf("exempt %s: %v", ip, v)
			}
		}
	}
	if r.Tracked() != 0 {
		t.Fatalf("exempt clients tracked: %d", r.Tracked())
	}
	off := NewRate(0, time.Minute, nil, nil)
	for range 10 {
		if v := off.Allow(netip.MustParseAddr("192.0.2.1")); v != RateOK {
			t.Fatal("limit 0 refused")
		}
	}
}

func TestRateTrackedBound(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	r := NewRate(1, time.Minute, nil, clk.Now)
	r.tracked = 4
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 4 {
		r.Allow(addr(i))
	}
	// Full of live windows: a new client is admitted, uncounted.
	for range 3 {
		if v := r.Allow(addr(10)); v != RateOK {
			t.Fatalf("new client with the table full: %v, want RateOK (fail open)", v)
		}
	}
	if n := r.Tracked(); n != 4 {
		t.Fatalf("tracked %d, want the bound 4", n)
	}
	// Known clients are still limited.
	if v := r.Allow(addr(0)); v != RateExceeded {
		t.Fatalf("known client: %v, want RateExceeded", v)
	}
	// Once their windows end, a sweep makes room.
	clk.now = clk.now.Add(2 * time.Minute)
	r.Allow(addr(10))
	if n := r.Tracked(); n != 1 {
		t.Fatalf("tracked %d after the sweep, want 1", n)
	}
	if v := r.Allow(addr(10)); v != RateExceeded {
		t.Fatalf("counted again after the sweep: %v, want RateExceeded", v)
	}
}
