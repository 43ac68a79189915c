package model

import (
	"fmt"
	"strings"
	"time"
)

// ColPolicy is the mailbox row's column that holds its spam policy
// (PolicyValue). smtpd keeps recipients with different policies in
// separate transactions, as one DATA gets one reply; spamd judges by it.
const ColPolicy = "policy"

// Policy is how spamd judges the mail of one mailbox.
type Policy uint8

// Policies. The zero value is the full check; every other one is a
// conscious exception an operator sets for one mailbox.
const (
	// PolicyFilter: every signal, greylisting included (the default).
	PolicyFilter Policy = 0
	// PolicyNoGreylist: judged as PolicyFilter, but a first contact is
	// never asked to retry: mail that is not sure spam is accepted at
	// once (a sales or support address whose senders must not wait).
	PolicyNoGreylist Policy = 1
	// PolicyAccept: never rejected or delayed by the content check (RFC
	// 5321 §4.5.1: postmaster must accept mail; RFC 2142: abuse should).
	// Only the mailbox's own block list still rejects; the score is still
	// recorded, so the operator sees what the check would have said.
	PolicyAccept Policy = 2
)

var policyNames = [...]string{PolicyFilter: "filter", PolicyNoGreylist: "nogreylist", PolicyAccept: "accept"}

// Valid reports whether p is a known policy.
func (p Policy) Valid() bool { return int(p) < len(policyNames) }

// String returns the policy's name ("filter", "nogreylist", "accept").
func (p Policy) String() string {
	if p.Valid() {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParsePolicy returns the policy with the given name.
func ParsePolicy(name string) (Policy, error) {
	for i, n := range policyNames {
		if strings.EqualFold(name, n) {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown spam policy %q (want one of %s)", name, strings.Join(policyNames[:], ", "))
}

// PolicyValue is the ColPolicy value for p set at t: the time in Unix
// milliseconds above the policy's byte, so that on every site the later
// change wins (columns merge by maximum) and a policy can be lowered
// again.
func PolicyValue(t time.Time, p Policy) uint64 {
	return uint64(max(t.UnixMilli(), 1))<<8 | uint64(p)
}

// PolicyOf decodes a ColPolicy value. Values without a time (below 256)
// are the bare numbers older versions stored, which only kept recipients
// apart and never changed a verdict: they read as PolicyFilter, so an
// upgrade does not relax any mailbox's check. known is false for a policy
// this version does not know (written by a newer one); it reads as
// PolicyFilter too, the safe side.
func PolicyOf(v uint64) (p Policy, known bool) {
	if v < 1<<8 {
		return PolicyFilter, true
	}
	p = Policy(v & 0xff)
	if !p.Valid() {
		return PolicyFilter, false
	}
	return p, true
}
