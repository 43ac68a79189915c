package wire

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func ephemeral(i int) PublicKey {
	var k PublicKey
	k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
	return k
}

func TestReplayCacheAdmit(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewReplayCache(4*time.Minute, 10)
	if err := c.admit(ephemeral(1), t0); err != nil {
		t.Fatalf("first admit: %v", err)
	}
	if err := c.admit(ephemeral(1), t0.Add(time.Second)); !errors.Is(err, errReplayed) {
		t.Fatalf("second admit = %v, want errReplayed", err)
	}
	if err := c.admit(ephemeral(1), t0.Add(4*time.Minute-time.Nanosecond)); !errors.Is(err, errReplayed) {
		t.Fatalf("admit just before expiry = %v, want errReplayed", err)
	}
	// The expiry instant still counts: see TestReplayAtWindowEdge.
	if err := c.admit(ephemeral(1), t0.Add(4*time.Minute)); !errors.Is(err, errReplayed) {
		t.Fatalf("admit at expiry = %v, want errReplayed", err)
	}
	if err := c.admit(ephemeral(1), t0.Add(4*time.Minute+time.Nanosecond)); err != nil {
		t.Fatalf("admit just after expiry = %v, want nil", err)
	}
	if got := c.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1", got)
	}
}

func TestReplayCacheFull(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewReplayCache(time.Minute, 3)
	for i := range 3 {
		if err := c.admit(ephemeral(i), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("admit %d: %v", i, err)
		}
	}
	// Full of live entries: refuse, do not evict.
	if err := c.admit(ephemeral(3), t0.Add(10*time.Second)); !errors.Is(err, errReplayFull) {
		t.Fatalf("admit into a full cache = %v, want errReplayFull", err)
	}
	if err := c.admit(ephemeral(0), t0.Add(10*time.Second)); !errors.Is(err, errReplayed) {
		t.Fatalf("live entry was evicted: %v", err)
	}
	// At its expiry instant the first entry is still live.
	if err := c.admit(ephemeral(3), t0.Add(time.Minute)); !errors.Is(err, errReplayFull) {
		t.Fatalf("admit at the first entry's expiry = %v, want errReplayFull", err)
	}
	// Once the first entry expired there is room again.
	if err := c.admit(ephemeral(3), t0.Add(time.Minute+time.Nanosecond)); err != nil {
		t.Fatalf("admit after expiry: %v", err)
	}
	if err := c.admit(ephemeral(4), t0.Add(time.Minute+time.Nanosecond)); !errors.Is(err, errReplayFull) {
		t.Fatalf("admit = %v, want errReplayFull", err)
	}
	if err := c.admit(ephemeral(4), t0.Add(3*time.Minute)); err != nil {
		t.Fatalf("admit after all expired: %v", err)
	}
	if got := c.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1", got)
	}
}

// TestReplayCacheClockStepsBack checks that expired entries behind a live
// one (out of order after the clock stepped back) are dropped when the cache
// is full, while live entries are kept.
func TestReplayCacheClockStepsBack(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewReplayCache(time.Minute, 2)
	if err := c.admit(ephemeral(1), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.admit(ephemeral(2), t0); err != nil {
		t.Fatal(err)
	}
	// At t0+2m entry 2 is expired but sits behind entry 1 in the queue.
	if err := c.admit(ephemeral(3), t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("admit with an expired entry behind a live one: %v", err)
	}
	if err := c.admit(ephemeral(1), t0.Add(2*time.Minute)); !errors.Is(err, errReplayed) {
		t.Fatalf("live entry lost: %v", err)
	}
}

func TestReplayCacheDefaults(t *testing.T) {
	c := NewReplayCache(0, 0)
	if c.TTL() != 2*DefaultWindow || c.max != DefaultReplayEntries {
		t.Fatalf("defaults = %s, %d", c.TTL(), c.max)
	}
}

func TestReplayCacheConcurrent(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewReplayCache(time.Minute, 1000)
	const workers, each = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Every key is offered by two workers; exactly one wins.
				k := ephemeral((w / 2 * each) + i)
				if c.admit(k, t0.Add(time.Duration(i)*time.Millisecond)) == nil {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if want := workers / 2 * each; admitted != want || c.Len() != want {
		t.Fatalf("admitted %d, Len %d, want %d", admitted, c.Len(), want)
	}
}

// TestReplayAtWindowEdge replays message 1 at the last instant its
// timestamp is acceptable, having first accepted it at the first such
// instant: the window is inclusive at both ends (±Window), so the cache
// entry, recorded for exactly 2×Window, must still hold at its expiry
// instant. Before the fix the entry counted as expired there, and the
// replay was admitted.
func TestReplayAtWindowEdge(t *testing.T) {
	f := newFixture(t)
	_, m1 := f.msg1(t, testNow)
	// Server clock behind: the timestamp is Window ahead, still accepted.
	if _, _, err := f.responder(testNow.Add(-DefaultWindow)).respond(m1); err != nil {
		t.Fatalf("first respond at the window's start: %v", err)
	}
	// Server clock ahead: the timestamp is Window behind, still accepted
	// by the clock check, so the cache alone must refuse the replay.
	_, _, err := f.responder(testNow.Add(DefaultWindow)).respond(m1)
	wantReason(t, err, ReasonReplay)
	// One nanosecond later the clock check refuses it.
	_, _, err = f.responder(testNow.Add(DefaultWindow + 1)).respond(m1)
	wantReason(t, err, ReasonClockSkew)
}
