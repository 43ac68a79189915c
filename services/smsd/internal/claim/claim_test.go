package claim

import (
	"testing"
	"time"
)

// TestDecide walks the interleavings of the two sites: A alive, A dead
// before its claim, A dead after its claim before confirming, and a claim
// whose replication is delayed.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	delay, timeout := time.Minute, 5*time.Minute
	in := func(me Site, now time.Duration, claim uint64, done bool) Input {
		return Input{Me: me, Now: t0.Add(now), FirstSeen: t0, Claim: claim, Done: done, PeerDelay: delay, Timeout: timeout}
	}
	aClaim := Value(t0.Add(time.Second), SiteA)
	bClaim := Value(t0.Add(delay), SiteB)
	tests := []struct {
		name  string
		in    Input
		want  Action
		until time.Time
	}{
		{"A claims at once", in(SiteA, 0, 0, false), Claim, time.Time{}},
		{"B waits for the peer delay", in(SiteB, 0, 0, false), Wait, t0.Add(delay)},
		{"B waits until just before the delay", in(SiteB, delay-time.Millisecond, 0, false), Wait, t0.Add(delay)},
		{"B claims when A never claimed (A dead before claim)", in(SiteB, delay, 0, false), Claim, time.Time{}},
		{"A alive: B sees A's claim and waits for its timeout", in(SiteB, delay, aClaim, false), Wait, t0.Add(time.Second + timeout)},
		{"A alive: B sees A's confirmation", in(SiteB, delay, aClaim, true), Done, time.Time{}},
		{"A dead after claim, before confirm: B takes over", in(SiteB, time.Second+timeout, aClaim, false), TakeOver, time.Time{}},
		{"A restarted with its own claim continues", in(SiteA, 10*time.Second, aClaim, false), Continue, time.Time{}},
		{"A sees B's claim (A was down) and waits", in(SiteA, delay+time.Second, bClaim, false), Wait, t0.Add(delay + timeout)},
		{"A takes over a dead B's claim", in(SiteA, delay+timeout, bClaim, false), TakeOver, time.Time{}},
		{"done wins over everything", in(SiteA, 0, 0, true), Done, time.Time{}},
		// Replication delayed beyond the peer delay: B cannot see A's
		// claim and claims too. This is the documented race window.
		{"replication delayed: B claims without seeing A", in(SiteB, 2*delay, 0, false), Claim, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if d.Action != tc.want || !d.Until.Equal(tc.until) {
				t.Errorf("Decide(%+v) = %v until %v, want %v until %v", tc.in, d.Action, d.Until, tc.want, tc.until)
			}
		})
	}
}

func TestValue(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_123)
	for _, s := range []Site{SiteA, SiteB} {
		got, site, ok := Decode(Value(at, s))
		if !ok || site != s || !got.Equal(at) {
			t.Errorf("Decode(Value(%v, %v)) = %v, %v, %v", at, s, got, site, ok)
		}
	}
	if _, _, ok := Decode(0); ok {
		t.Error("Decode(0) ok, want no claim")
	}
	// A later claim outranks an earlier one whatever the site.
	if Value(at.Add(time.Millisecond), SiteA) <= Value(at, SiteB) {
		t.Error("a later claim of A does not outrank an earlier claim of B")
	}
}
