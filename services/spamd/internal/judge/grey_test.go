package judge

import (
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestGreyDelayFromFirstContact: the greylisting delay counts from the
// mail's first contact even when its retries come from other networks
// (a large sender's pool) or with a sender tag Normalize does not remove:
// it counted from the previous attempt instead, so a sender retrying
// more often than the delay was asked to retry for ever.
func TestGreyDelayFromFirstContact(t *testing.T) {
	type try struct {
		client, from string
		after        time.Duration
		want         model.Verdict
	}
	for _, tt := range []struct {
		name  string
		tries []try
	}{
		{"other networks", []try{
			{"192.0.2.7:1", "alice@orig.example", 0, model.Retry},
			{"198.51.100.9:1", "alice@orig.example", 45 * time.Second, model.Retry},
			{"203.0.113.5:1", "alice@orig.example", 100 * time.Second, model.Accept},
		}},
		{"other ipv6 networks", []try{
			{"[2001:db8:1::1]:1", "alice@orig.example", 0, model.Retry},
			{"[2001:db8:2::1]:1", "alice@orig.example", 45 * time.Second, model.Retry},
			{"[2001:db8:3::1]:1", "alice@orig.example", 90 * time.Second, model.Accept},
		}},
		{"sender id changes every retry", []try{
			{"192.0.2.7:1", "0100018c1a2b3c4d-aa@ses.example", 0, model.Retry},
			{"192.0.2.7:1", "0100018c1a2b3c4d-bb@ses.example", 40 * time.Second, model.Retry},
			{"192.0.2.7:1", "0100018c1a2b3c4d-cc@ses.example", 80 * time.Second, model.Accept},
		}},
		{"too early still", []try{
			{"192.0.2.7:1", "alice@orig.example", 0, model.Retry},
			{"198.51.100.9:1", "alice@orig.example", 30 * time.Second, model.Retry},
			{"203.0.113.5:1", "alice@orig.example", 59 * time.Second, model.Retry},
			{"203.0.113.5:1", "alice@orig.example", 61 * time.Second, model.Accept},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, nil) // no model: unsure, so a first contact is greylisted
			mk := w.mail("one")
			for _, a := range tt.tries {
				w.client = a.client
				if v, r := w.attempt(mk, a.from, a.after); v != a.want {
					t.Fatalf("attempt from %s as %s at +%v = %v (%s), want %v", a.client, a.from, a.after, v, r, a.want)
				}
			}
		})
	}
}

// TestGreyTooEarlyListed: a retry that comes back before the delay is
// not greylisted again when the sender was allow-listed, became a known
// correspondent or was block-listed since its first contact: the lists
// and known correspondents come before greylisting (docs/spamd.md,
// "Decision policy"). It got retry regardless.
func TestGreyTooEarlyListed(t *testing.T) {
	const from = "alice@orig.example"
	for _, tt := range []struct {
		name string
		set  func(w *world)
		want model.Verdict
	}{
		{"allow listed", func(w *world) {
			w.db.Put(model.Text, ListContent(testRcpt, "@orig.example"), colList, ListValue(w.now, ListAllow))
		}, model.Accept},
		{"block listed", func(w *world) {
			w.db.Put(model.Text, ListContent(testRcpt, from), colList, ListValue(w.now, ListBlock))
		}, model.Reject},
		{"known correspondent", func(w *world) {
			w.db.Put(model.Text, knownContent(testRcpt, from), colKnown, 1)
		}, model.Accept},
		{"nothing changed", func(*world) {}, model.Retry},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, nil) // no model: unsure, so a first contact is greylisted
			mk := w.mail("one")
			if v, r := w.attempt(mk, from, 0); v != model.Retry {
				t.Fatalf("first contact = %v (%s), want retry", v, r)
			}
			tt.set(w)
			if v, r := w.attempt(mk, from, 30*time.Second); v != tt.want {
				t.Errorf("retry before the delay = %v (%s), want %v", v, r, tt.want)
			}
		})
	}
}
