package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// safety bounds a wait that must end at once when the code is right, so
// that a wrong one fails instead of hanging (no time is asserted).
const safety = 20 * time.Second

// Accounts of the budget tests.
var alice, bob, carol = model.Key{1}, model.Key{2}, model.Key{3}

// TestAppendBudgetDeadlock: two half-read APPENDs that each need more than
// is left. Each waits for the other; before, both waited until
// AppendWait ended and both failed. Now the later one gives up at once
// (errNoRoom) and the earlier one goes on when it gives its memory back,
// whichever of the two asks first.
func TestAppendBudgetDeadlock(t *testing.T) {
	for _, earlierAsksFirst := range []bool{true, false} {
		b := newAppendBudget(100, 100)
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		early, late := b.hold(alice), b.hold(alice)
		if err := early.grow(ctx, 40); err != nil {
			t.Fatal(err)
		}
		if err := late.grow(ctx, 40); err != nil {
			t.Fatal(err)
		}
		earlyDone := make(chan error, 1)
		lateDone := make(chan error, 1)
		if earlierAsksFirst {
			go func() { earlyDone <- early.grow(ctx, 30) }()
			go func() { lateDone <- late.grow(ctx, 30) }()
		} else {
			go func() { lateDone <- late.grow(ctx, 30) }()
			go func() { earlyDone <- early.grow(ctx, 30) }()
		}
		err := <-lateDone
		if !errors.Is(err, errNoRoom) || ctx.Err() != nil {
			t.Fatalf("earlier asks first %v: the later APPEND's grow = %v (context %v), want errNoRoom at once", earlierAsksFirst, err, ctx.Err())
		}
		late.release()
		if err := <-earlyDone; err != nil {
			t.Fatalf("earlier asks first %v: the earlier APPEND's grow after the later gave up = %v", earlierAsksFirst, err)
		}
		if u := b.used(); u != 70 {
			t.Errorf("used = %d, want 70", u)
		}
		early.release()
		if u := b.used(); u != 0 {
			t.Errorf("used after release = %d, want 0", u)
		}
	}
}

// TestAppendBudgetWaitsForReader: an APPEND that finds no room while
// another reads on (not waiting) waits, and goes on once that one gives
// its memory back; it is not told to give up.
func TestAppendBudgetWaitsForReader(t *testing.T) {
	b := newAppendBudget(100, 100)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	reader, waiter := b.hold(alice), b.hold(alice)
	if err := reader.grow(ctx, 60); err != nil {
		t.Fatal(err)
	}
	if err := waiter.grow(ctx, 10); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiter.grow(ctx, 50) }()
	reader.release()
	if err := <-done; err != nil {
		t.Fatalf("grow once the reader gave its memory back: %v", err)
	}
	waiter.release()
	// A lone hold that can never fit gives up at once.
	lone := b.hold(alice)
	if err := lone.grow(ctx, 60); err != nil {
		t.Fatal(err)
	}
	if err := lone.grow(ctx, 50); !errors.Is(err, errNoRoom) || ctx.Err() != nil {
		t.Errorf("a lone hold asking beyond the budget: %v, want errNoRoom at once", err)
	}
	lone.release()
	// ctx ending ends the wait.
	short, stop := context.WithCancel(context.Background())
	stop()
	blocker, w := b.hold(alice), b.hold(alice)
	if err := blocker.grow(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := w.grow(short, 1); !errors.Is(err, errNoRoom) {
		t.Errorf("grow with its context ended: %v, want errNoRoom", err)
	}
	blocker.release()
}

// TestReadAppendHoldsWhatArrived: an APPEND holds memory for what its
// client has sent, not for what it announced. Before, the literal's full
// size was taken before a byte arrived. The bytes go through a pipe, so
// each write returns once readAppend has taken them.
func TestReadAppendHoldsWhatArrived(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 100, appendFirstChunk, appendFirstChunk + 1, 50_000, 3_000_000} {
		mail := make([]byte, size)
		for i := range mail {
			mail[i] = byte(rng.IntN(256))
		}
		b := newAppendBudget(MinAppendMemory, MinAppendMemory)
		h := b.hold(alice)
		pr, pw := io.Pipe()
		type result struct {
			raw []byte
			err error
		}
		done := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), safety)
			defer cancel()
			raw, err := readAppend(pr, int64(size), func(n int64) error { return h.grow(ctx, n) }, h.shrink)
			done <- result{raw, err}
		}()
		sent := 0
		for sent < size {
			n := min(1+rng.IntN(300_000), size-sent)
			if _, err := pw.Write(mail[sent : sent+n]); err != nil {
				t.Fatal(err)
			}
			sent += n
			if sent == size {
				break // the last piece may be held with the whole mail
			}
			// Four times what was sent, five for the moment of the
			// copy into the mail's buffer.
			if u := b.used(); u > 5*int64(sent)+appendFirstChunk {
				t.Fatalf("size %d: %d bytes held after %d sent, want at most five times what was sent", size, u, sent)
			}
		}
		res := <-done
		if res.err != nil || !bytes.Equal(res.raw, mail) {
			t.Fatalf("size %d: readAppend = %d bytes, %v; want the mail", size, len(res.raw), res.err)
		}
		if u := b.used(); u != int64(size) {
			t.Errorf("size %d: %d bytes held after the read, want the mail's size", size, u)
		}
		h.release()
		if u := b.used(); u != 0 {
			t.Errorf("size %d: %d bytes held after release", size, u)
		}
	}
	// Announced and nothing sent: at most the first piece is held.
	b := newAppendBudget(MinAppendMemory, MinAppendMemory)
	h := b.hold(alice)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := readAppend(pr, 60_000_000, func(n int64) error { return h.grow(context.Background(), n) }, h.shrink)
		done <- err
	}()
	if _, err := pw.Write([]byte("x")); err != nil { // readAppend has asked for its first piece
		t.Fatal(err)
	}
	if u := b.used(); u > appendFirstChunk {
		t.Errorf("a 60 MB literal with one byte sent holds %d bytes, want at most %d", u, appendFirstChunk)
	}
	pw.CloseWithError(io.ErrClosedPipe)
	if err := <-done; !errors.Is(err, errClientGone) {
		t.Errorf("readAppend with the client gone: %v, want errClientGone", err)
	}
	h.release()
	if u := b.used(); u != 0 {
		t.Errorf("%d bytes held after a failed read was released", u)
	}
}

// TestAppendBudgetAccountShare: the holds of one account together hold
// at most its share, while another account still takes memory from the
// pool. Before, there was no share: alice's second hold took its 10 and
// bob's 50 found no room (one account with many connections could hold
// the whole pool). An APPEND over its share waits for the account's
// other APPENDs and goes on when one gives its memory back; one that
// waits in vain fails with errAccountNoRoom, not the pool's error.
func TestAppendBudgetAccountShare(t *testing.T) {
	b := newAppendBudget(100, 50)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	ended, end := context.WithCancel(context.Background())
	end()
	a1, a2, other := b.hold(alice), b.hold(alice), b.hold(bob)
	if err := a1.grow(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if err := a2.grow(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if err := a2.grow(ended, 10); !errors.Is(err, errAccountNoRoom) || !errors.Is(err, errNoRoom) {
		t.Errorf("alice's holds growing to 55 of a share of 50: %v, want errAccountNoRoom", err)
	}
	if u := b.accountUsed(alice); u != 45 {
		t.Errorf("alice holds %d, want 45", u)
	}
	if err := other.grow(ended, 50); err != nil {
		t.Fatalf("bob taking 50 while alice holds 45 of 100: %v, want room", err)
	}
	// alice's wait ends when her own other APPEND gives its memory back.
	done := make(chan error, 1)
	go func() { done <- a2.grow(ctx, 10) }()
	a1.release()
	if err := <-done; err != nil {
		t.Fatalf("alice's grow once her other hold gave its memory back: %v", err)
	}
	if u, ua, ub := b.used(), b.accountUsed(alice), b.accountUsed(bob); u != 75 || ua != 25 || ub != 50 {
		t.Errorf("used %d, alice %d, bob %d; want 75, 25, 50", u, ua, ub)
	}
	// The pool full is the pool's error, not the account's.
	c := b.hold(carol)
	if err := c.grow(ended, 30); !errors.Is(err, errNoRoom) || errors.Is(err, errAccountNoRoom) {
		t.Errorf("carol's 30 with 25 left in the pool: %v, want errNoRoom only", err)
	}
	for _, h := range []*appendHold{a2, other, c} {
		h.release()
	}
	if u, ua, ub := b.used(), b.accountUsed(alice), b.accountUsed(bob); u != 0 || ua != 0 || ub != 0 {
		t.Errorf("after release: used %d, alice %d, bob %d; want 0", u, ua, ub)
	}
	// A share above the pool is the pool.
	if b := newAppendBudget(100, 1000); b.perAccount != 100 {
		t.Errorf("share of a 100-byte pool asked as 1000: %d, want 100", b.perAccount)
	}
}

// TestAppendBudgetAccountDeadlock: two half-read APPENDs of one account
// each need more than is left of its share, while another account's
// APPEND reads on. The rule before the shares ("when every hold waits,
// the last gives up") saw bob's reader and let alice's two wait for each
// other until both timed out; now the later gives up at once and the
// earlier goes on.
func TestAppendBudgetAccountDeadlock(t *testing.T) {
	b := newAppendBudget(1000, 100)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	reader := b.hold(bob)
	if err := reader.grow(ctx, 100); err != nil {
		t.Fatal(err)
	}
	early, late := b.hold(alice), b.hold(alice)
	if err := early.grow(ctx, 40); err != nil {
		t.Fatal(err)
	}
	if err := late.grow(ctx, 40); err != nil {
		t.Fatal(err)
	}
	earlyDone := make(chan error, 1)
	go func() { earlyDone <- early.grow(ctx, 30) }()
	if err := late.grow(ctx, 30); !errors.Is(err, errAccountNoRoom) || ctx.Err() != nil {
		t.Fatalf("the later of alice's APPENDs: %v (context %v), want errAccountNoRoom at once", err, ctx.Err())
	}
	late.release()
	if err := <-earlyDone; err != nil {
		t.Fatalf("the earlier of alice's APPENDs after the later gave up: %v", err)
	}
	if u := b.accountUsed(alice); u != 70 {
		t.Errorf("alice holds %d, want 70", u)
	}
	early.release()
	reader.release()
}

// TestAppendBudgetReleasedAfterDrop: the memory of an APPEND whose
// client left mid-literal goes back to the pool and to its account's
// share, and an APPEND of the same account waiting for the share goes
// on.
func TestAppendBudgetReleasedAfterDrop(t *testing.T) {
	const mib = 1 << 20
	b := newAppendBudget(20*mib, 8*mib)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	dropped := b.hold(alice)
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		_, err := readAppend(pr, 6*mib, func(n int64) error { return dropped.grow(ctx, n) }, dropped.shrink)
		read <- err
	}()
	// Past the first quarter: the mail's whole buffer is taken.
	if _, err := pw.Write(make([]byte, 4*mib)); err != nil {
		t.Fatal(err)
	}
	if u := b.accountUsed(alice); u != 6*mib {
		t.Fatalf("alice holds %d after 4 MiB of a 6 MiB mail, want %d", u, 6*mib)
	}
	waiter := b.hold(alice)
	waited := make(chan error, 1)
	go func() { waited <- waiter.grow(ctx, 3*mib) }()
	pw.CloseWithError(io.ErrClosedPipe) // the client leaves
	if err := <-read; !errors.Is(err, errClientGone) {
		t.Fatalf("readAppend with the client gone: %v, want errClientGone", err)
	}
	dropped.release() // as Append's defer does
	if err := <-waited; err != nil {
		t.Fatalf("alice's other APPEND once the dropped one's memory was given back: %v", err)
	}
	if u, ua := b.used(), b.accountUsed(alice); u != 3*mib || ua != 3*mib {
		t.Errorf("used %d, alice %d; want %d each", u, ua, 3*mib)
	}
	waiter.release()
	if u, ua := b.used(), b.accountUsed(alice); u != 0 || ua != 0 {
		t.Errorf("after release: used %d, alice %d; want 0", u, ua)
	}
}

// TestAppendMemoryBounds: the defaults and bounds NewBackend applies to
// Config.AppendMemory and Config.AppendMemoryPerAccount.
func TestAppendMemoryBounds(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                  string
		total, perAccount     int64
		wantTotal, wantPerAcc int64
	}{
		{"defaults", 0, 0, DefaultAppendMemory, DefaultAppendMemoryPerAccount},
		{"pool raised to its least", 1, 0, MinAppendMemory, MinAppendMemory},
		{"no share", 1024 * mib, -1, 1024 * mib, 1024 * mib},
		{"share raised to its least", 1024 * mib, 1, 1024 * mib, MinAppendMemory},
		{"share cut to the pool", 100 * mib, 1024 * mib, 100 * mib, 100 * mib},
		{"share as given", 1024 * mib, 200 * mib, 1024 * mib, 200 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, per := AppendMemoryBounds(tt.total, tt.perAccount)
			if total != tt.wantTotal || per != tt.wantPerAcc {
				t.Errorf("AppendMemoryBounds(%d, %d) = %d, %d; want %d, %d", tt.total, tt.perAccount, total, per, tt.wantTotal, tt.wantPerAcc)
			}
		})
	}
}
