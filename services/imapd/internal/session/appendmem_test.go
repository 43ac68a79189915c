package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// safety bounds a wait that must end at once when the code is right, so
// that a wrong one fails instead of hanging (no time is asserted).
const safety = 20 * time.Second

// TestAppendBudgetDeadlock: two half-read APPENDs that each need more than
// is left. Each waits for the other; before, both waited until
// AppendWait ended and both failed. Now the later one gives up at once
// (errNoRoom) and the earlier one goes on when it gives its memory back,
// whichever of the two asks first.
func TestAppendBudgetDeadlock(t *testing.T) {
	for _, earlierAsksFirst := range []bool{true, false} {
		b := newAppendBudget(100)
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		early, late := b.hold(), b.hold()
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
	b := newAppendBudget(100)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	reader, waiter := b.hold(), b.hold()
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
	lone := b.hold()
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
	blocker, w := b.hold(), b.hold()
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
		b := newAppendBudget(minAppendMemory)
		h := b.hold()
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
	b := newAppendBudget(minAppendMemory)
	h := b.hold()
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
