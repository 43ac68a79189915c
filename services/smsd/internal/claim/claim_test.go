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
	bFuture := Value(t0.Add(24*time.Hour), SiteB)
	seenAt := func(in Input, seen time.Duration) Input {
		in.ClaimSeen = t0.Add(seen)
		return in
	}
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
		// B's clock runs ahead. Within the timeout its stamp is taken as
		// it is (skew eats into the timeout, as documented); beyond it,
		// the claim ages from when A first saw it. It used to block a
		// takeover until a timeout after its stamp: a day, here.
		{"B's clock a little ahead: A waits for its stamp's timeout", in(SiteA, delay, Value(t0.Add(2*delay), SiteB), false), Wait, t0.Add(2*delay + timeout)},
		{"B's clock a day ahead: A waits a timeout from first sight", seenAt(in(SiteA, delay, bFuture, false), delay), Wait, t0.Add(delay + timeout)},
		{"B's clock a day ahead, first seen now", in(SiteA, 2*delay, bFuture, false), Wait, t0.Add(2*delay + timeout)},
		{"B's clock a day ahead: A takes over a timeout after first sight", seenAt(in(SiteA, delay+timeout, bFuture, false), delay), TakeOver, time.Time{}},
		{"B's clock a day ahead, row done", seenAt(in(SiteA, delay+timeout, bFuture, true), delay), Done, time.Time{}},
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

// TestAbove: a takeover must write a value above the current claim, or
// the merge by maximum keeps the old one; a claim stamped ahead of our
// clock needs a value above its stamp.
func TestAbove(t *testing.T) {
	now := time.UnixMilli(1_780_000_000_000)
	if got := Above(0, now, SiteA); got != Value(now, SiteA) {
		t.Errorf("Above(no claim) = %x, want %x", got, Value(now, SiteA))
	}
	if got := Above(Value(now.Add(-time.Second), SiteB), now, SiteA); got != Value(now, SiteA) {
		t.Errorf("Above(an older claim) = %x, want %x", got, Value(now, SiteA))
	}
	ahead := Value(now.Add(24*time.Hour), SiteB)
	got := Above(ahead, now, SiteA)
	if at, s, _ := Decode(got); got <= ahead || s != SiteA || !at.Equal(now.Add(24*time.Hour+time.Millisecond)) {
		t.Errorf("Above(a claim a day ahead) = %v %v, want A's claim just above it", at, s)
	}
	if got := Above(Value(now, SiteA), now, SiteA); got <= Value(now, SiteA) {
		t.Error("a refresh in the same millisecond does not rise")
	}
}
