package mailbox

import (
	"net/netip"
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1_800_000_000, 0)
	l := NewAuthLimiter(3, time.Minute)
	for i := range 3 {
		if l.Blocked(a, t0) {
			t.Fatalf("blocked after %d failures, limit 3", i)
		}
		l.Fail(a, t0.Add(time.Duration(i)*time.Second))
	}
	if !l.Blocked(a, t0.Add(3*time.Second)) {
		t.Fatal("not blocked after 3 failures within the window")
	}
	if l.Blocked(b, t0) {
		t.Fatal("another address is blocked")
	}
	if l.Blocked(a, t0.Add(time.Minute+time.Second)) {
		t.Fatal("still blocked after the first failure left the window")
	}
	off := NewAuthLimiter(-1, time.Minute)
	for range 100 {
		off.Fail(a, t0)
	}
	if off.Blocked(a, t0) {
		t.Fatal("a limiter with max < 0 blocked")
	}
}

// TestAuthLimiterIPv6Network: failures from one IPv6 /64 count together
// (a host changes address within its /64 at will), other networks and
// IPv4 addresses apart; an IPv4-mapped IPv6 address is its IPv4 address.
func TestAuthLimiterIPv6Network(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewAuthLimiter(3, time.Minute)
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		l.Fail(netip.MustParseAddr(a), now)
	}
	for a, want := range map[string]bool{
		"2001:db8:1:2::99": true,  // same /64
		"2001:db8:1:3::1":  false, // next /64
		"192.0.2.1":        false,
	} {
		if got := l.Blocked(netip.MustParseAddr(a), now); got != want {
			t.Errorf("Blocked(%s) = %v, want %v", a, got, want)
		}
	}
	for range 3 {
		l.Fail(netip.MustParseAddr("::ffff:192.0.2.7"), now)
	}
	if !l.Blocked(netip.MustParseAddr("192.0.2.7"), now) {
		t.Error("failures from ::ffff:192.0.2.7 do not block 192.0.2.7")
	}
	if l.Blocked(netip.MustParseAddr("192.0.2.8"), now) {
		t.Error("failures from 192.0.2.7 block 192.0.2.8")
	}
}
