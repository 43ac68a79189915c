package model

import (
	"testing"
	"time"
)

func TestPolicyRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	for _, p := range []Policy{PolicyFilter, PolicyNoGreylist, PolicyAccept} {
		got, known := PolicyOf(PolicyValue(at, p))
		if got != p || !known {
			t.Errorf("PolicyOf(PolicyValue(%v)) = %v, %v", p, got, known)
		}
		back, err := ParsePolicy(p.String())
		if err != nil || back != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), back, err)
		}
	}
	if p, err := ParsePolicy("ACCEPT"); err != nil || p != PolicyAccept {
		t.Errorf("ParsePolicy is not case-blind: %v, %v", p, err)
	}
	for _, bad := range []string{"", "2", "reject", "accept "} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
}

// The column merges by maximum on every site: a later change must win,
// whichever way it goes, or a relaxed policy could never be tightened
// again.
func TestPolicyLaterWins(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	for _, c := range []struct{ first, then Policy }{
		{PolicyAccept, PolicyFilter},
		{PolicyFilter, PolicyAccept},
		{PolicyNoGreylist, PolicyFilter},
	} {
		merged := max(PolicyValue(t0, c.first), PolicyValue(t0.Add(time.Millisecond), c.then))
		if got, _ := PolicyOf(merged); got != c.then {
			t.Errorf("%v then %v a millisecond later: merged reads %v", c.first, c.then, got)
		}
	}
}

// Older versions stored bare numbers that never changed a verdict: an
// upgrade must not read any of them as a relaxed policy, and any value
// set since wins over them.
func TestPolicyLegacyNumbers(t *testing.T) {
	for _, v := range []uint64{0, 1, 2, 3, 255} {
		if p, known := PolicyOf(v); p != PolicyFilter || !known {
			t.Errorf("PolicyOf(%d) = %v, %v; want filter", v, p, known)
		}
	}
	v := PolicyValue(time.Unix(1, 0), PolicyAccept)
	if p, _ := PolicyOf(max(v, 255)); p != PolicyAccept {
		t.Errorf("a set policy does not win over a legacy number: %v", p)
	}
}

func TestPolicyUnknown(t *testing.T) {
	v := PolicyValue(time.Unix(1e9, 0), Policy(7))
	if p, known := PolicyOf(v); p != PolicyFilter || known {
		t.Errorf("PolicyOf(unknown 7) = %v, %v; want filter, false", p, known)
	}
	if s := Policy(7).String(); s != "policy(7)" {
		t.Errorf("String = %q", s)
	}
}
