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
