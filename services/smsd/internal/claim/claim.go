// Package claim decides, as a pure function, whether this smsd instance
// may send a notification (an SMS or a forward copy) for one receive row,
// so that two sites send it once (SPEC §9).
//
// A claim is a status column on the receive row (sms.claim, fwd.claim)
// holding Value(time, site): the claim time in Unix ms above 8 bits of
// site id. Columns only rise and replicate, so every site ends up with the
// newest claim, and its low byte names the owner. The owner refreshes the
// claim each time it tries to send, so a live owner's claim stays fresh
// while it retries a failing gateway.
//
// Site A claims at once. Site B waits PeerDelay after it first saw the row
// ready, and claims only if no claim has replicated by then. A claim not
// refreshed for Timeout (its owner died before confirming) is taken over:
// the other site writes a newer claim of its own. A claim stamped more
// than Timeout ahead of this site's clock (the other site's clock is
// wrong) ages from when this site first saw it, so a wrong clock delays a
// takeover by Timeout at most, as a right one does. docs/smsd.md explains
// the race that remains.
package claim

import "time"

// Site identifies an smsd instance in a claim's low byte.
type Site uint8

// The two sites. 0 is "no claim".
const (
	SiteA Site = 1
	SiteB Site = 2
)

// String returns "A" or "B".
func (s Site) String() string {
	switch s {
	case SiteA:
		return "A"
	case SiteB:
		return "B"
	}
	return "?"
}

// Value returns the claim (or confirmation) column value for site at t.
func Value(t time.Time, s Site) uint64 {
	return uint64(max(t.UnixMilli(), 1))<<8 | uint64(s)
}

// Above returns site s's claim value for t, or, if cur (the row's claim
// column) is stamped at t or later, the value one millisecond above it.
// Columns merge by maximum, so a claim that does not rise above the
// current value is no claim at all: taking over a claim stamped by a
// clock that runs ahead, or refreshing the claim that took it over,
// needs a value above it.
func Above(cur uint64, t time.Time, s Site) uint64 {
	v := Value(t, s)
	if at, _, ok := Decode(cur); ok && cur >= v {
		v = Value(at.Add(time.Millisecond), s)
	}
	return v
}

// Decode splits a claim column value; ok is false for 0 (no claim).
func Decode(v uint64) (t time.Time, s Site, ok bool) {
	if v == 0 {
		return time.Time{}, 0, false
	}
	return time.UnixMilli(int64(v >> 8)), Site(v & 0xff), true
}

// Action is what an instance does with a row.
type Action int

// Actions.
const (
	// Done: every target is confirmed (or given up); nothing to do.
	Done Action = iota + 1
	// Wait: not now; look again at Input.Until.
	Wait
	// Claim: nobody has claimed; write our claim and send.
	Claim
	// Continue: we hold the claim (a retry, or we restarted); refresh it
	// and send what is not confirmed.
	Continue
	// TakeOver: the peer's claim expired; write a newer claim of ours and
	// send what is not confirmed.
	TakeOver
)

var actionNames = map[Action]string{Done: "done", Wait: "wait", Claim: "claim", Continue: "continue", TakeOver: "takeover"}

// String returns the action's lower-case name.
func (a Action) String() string { return actionNames[a] }

// Input is what Decide looks at.
type Input struct {
	Me        Site
	Now       time.Time
	FirstSeen time.Time // when this instance first saw the row ready (acknowledged, accepted)
	Claim     uint64    // the row's claim column
	// ClaimSeen is when this instance first saw Claim (zero: Now). It
	// stands in for the claim's time when that lies more than Timeout
	// ahead of Now: the other site's clock is wrong, and waiting until
	// its stamp is Timeout old would block a takeover for as long as
	// the clock is ahead (days, for a clock set a day ahead).
	ClaimSeen time.Time
	Done      bool // every target confirmed or given up
	PeerDelay time.Duration
	Timeout   time.Duration
}

// Decision is Decide's answer. Until is set for Wait.
type Decision struct {
	Action Action
	Until  time.Time
	Owner  Site // the current claim's owner (0: none)
	// Future is set when the other site's claim is stamped more than
	// Timeout ahead of Now, so its age counts from ClaimSeen.
	Future bool
}

// Decide returns what instance in.Me does with the row now.
func Decide(in Input) Decision {
	if in.Done {
		return Decision{Action: Done}
	}
	at, owner, claimed := Decode(in.Claim)
	switch {
	case !claimed && in.Me == SiteA:
		return Decision{Action: Claim}
	case !claimed:
		if due := in.FirstSeen.Add(in.PeerDelay); in.Now.Before(due) {
			return Decision{Action: Wait, Until: due}
		}
		return Decision{Action: Claim}
	case owner == in.Me:
		return Decision{Action: Continue, Owner: owner}
	}
	future := at.Sub(in.Now) > in.Timeout
	if future {
		at = in.Now
		if !in.ClaimSeen.IsZero() && in.ClaimSeen.Before(at) {
			at = in.ClaimSeen
		}
	}
	if expiry := at.Add(in.Timeout); in.Now.Before(expiry) {
		return Decision{Action: Wait, Until: expiry, Owner: owner, Future: future}
	}
	return Decision{Action: TakeOver, Owner: owner, Future: future}
}
