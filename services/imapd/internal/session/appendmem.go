package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// An APPEND's literal is read into memory whole (it goes to dbd in one
// batch), and all sessions' APPENDs share Config.AppendMemory. The
// memory is taken as the literal's bytes arrive, not when the literal is
// announced: before (until 2026-12-03) an APPEND took its literal's
// announced size at once and go-imap then gave the client 5 minutes to
// send it, so four clients announcing {64000000} and sending nothing
// held the whole 256 MiB default and every other user's APPEND got NO
// [LIMIT], again and again (TestAppendAnnouncedLiteralHoldsNothing).
//
// readAppend reads the first quarter of a literal in pieces, each no
// larger than what has arrived so far (appendFirstChunk to begin with,
// at most appendMaxChunk), then takes one buffer of the literal's size,
// copies the pieces into it and gives them back, and reads the rest
// into it. A client so holds at most twice what it sent plus 4 KiB
// during the first quarter and four times what it sent after, and the
// mail is copied once more than before (a quarter of it). One APPEND
// holds at most its size, plus a quarter, plus one piece, for the
// moment of the copy (minAppendMemory): some 75 MiB of peak for a
// 60 MiB mail, which TestAppendMemory's bound allows.
const (
	appendFirstChunk = 4 << 10
	appendMaxChunk   = 1 << 20
)

// minAppendMemory is the least Config.AppendMemory: one APPEND of the
// APPENDLIMIT at its peak (readAppend), so such a mail can always be
// stored when no other APPEND runs.
const minAppendMemory = appendLimit + appendLimit/4 + appendMaxChunk

// errNoRoom is an APPEND's failure to get memory from the budget: it
// waited too long, or it gave up to end a deadlock (appendBudget).
var errNoRoom = errors.New("session: no room in the APPEND memory")

// readAppend reads a literal of size bytes from r into one buffer,
// taking memory with grow just before bytes are read into it and giving
// back with shrink the pieces it no longer needs (see the top of this
// file). An error from grow is returned as it is; a read error wrapped
// in errClientGone. On an error, what grow took stays taken: the caller
// releases its hold.
func readAppend(r io.Reader, size int64, grow func(int64) error, shrink func(int64)) ([]byte, error) {
	var pieces [][]byte
	var got int64
	for got < size && got < (size+3)/4 {
		n := min(max(got, appendFirstChunk), appendMaxChunk, size-got)
		if err := grow(n); err != nil {
			return nil, err
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, fmt.Errorf("%w: read APPEND literal: %w", errClientGone, err)
		}
		pieces = append(pieces, p)
		got += n
	}
	if len(pieces) == 1 && got == size {
		return pieces[0], nil // a small mail: one piece of its size
	}
	if err := grow(size); err != nil {
		return nil, err
	}
	raw := make([]byte, size)
	off := 0
	for _, p := range pieces {
		off += copy(raw[off:], p)
	}
	shrink(got) // the pieces are garbage now
	if _, err := io.ReadFull(r, raw[got:]); err != nil {
		return nil, fmt.Errorf("%w: read APPEND literal: %w", errClientGone, err)
	}
	return raw, nil
}

// appendBudget is the memory all sessions' APPENDs hold at once
// (Config.AppendMemory). It is safe for concurrent use.
//
// An APPEND that finds no room waits (up to Config.AppendWait) for
// another to give memory back. Waiting while holding memory can
// deadlock: two half-read APPENDs each waiting for what the other holds
// would both wait until they time out, and both fail. So when every
// APPEND that holds memory is waiting, the one that took its first bytes
// last gives up at once (errNoRoom: NO [LIMIT]) and its memory goes to
// the others; then the next, until one can go on (wait-die). One that
// reads on is not waiting: it will finish, or fail, and give its memory
// back. An APPEND that holds nothing may wait: it keeps no one waiting.
// A lone APPEND always fits: the budget is at least minAppendMemory.
type appendBudget struct {
	mu    sync.Mutex
	size  int64
	free  int64
	next  uint64 // the order of the next hold to take its first bytes
	holds map[*appendHold]struct{}
	// changed is closed, and replaced, when free grows or a hold is
	// told to give up: waiters look again.
	changed chan struct{}
}

func newAppendBudget(size int64) *appendBudget {
	return &appendBudget{size: size, free: size, holds: map[*appendHold]struct{}{}, changed: make(chan struct{})}
}

// hold returns an empty hold on b for one APPEND; the caller must call
// its release.
func (b *appendBudget) hold() *appendHold { return &appendHold{b: b} }

// used returns the memory held (tests).
func (b *appendBudget) used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size - b.free
}

// appendHold is one APPEND's memory from an appendBudget. It is used by
// one goroutine.
type appendHold struct {
	b *appendBudget
	// The fields below are guarded by b.mu.
	order   uint64 // when it took its first bytes: lower is earlier
	held    int64
	waiting bool
	doomed  bool // told to give up, to end a deadlock
}

// grow takes n more bytes, waiting for room until ctx ends. It fails
// with errNoRoom when ctx ends first or when the hold is told to give up
// (see appendBudget).
func (h *appendHold) grow(ctx context.Context, n int64) error {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if h.doomed {
			h.waiting = false
			return fmt.Errorf("%w: given up to let an earlier APPEND go on", errNoRoom)
		}
		if n <= b.free {
			b.free -= n
			if h.held == 0 {
				b.next++
				h.order = b.next
				b.holds[h] = struct{}{}
			}
			h.held += n
			h.waiting = false
			return nil
		}
		h.waiting = true
		b.breakDeadlockLocked()
		if h.doomed {
			continue
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
			b.mu.Lock()
		case <-ctx.Done():
			b.mu.Lock()
			h.waiting = false
			return fmt.Errorf("%w: waited for %d bytes: %w", errNoRoom, n, ctx.Err())
		}
	}
}

// breakDeadlockLocked tells the last of the holds to give up when every
// hold that holds memory waits, and none is giving up already.
func (b *appendBudget) breakDeadlockLocked() {
	var last *appendHold
	for h := range b.holds {
		if !h.waiting || h.doomed {
			return // its memory will come back
		}
		if last == nil || h.order > last.order {
			last = h
		}
	}
	if last != nil {
		last.doomed = true
		b.broadcastLocked()
	}
}

func (b *appendBudget) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// shrink gives n of the hold's bytes back.
func (h *appendHold) shrink(n int64) {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, h.held)
	h.held -= n
	b.free += n
	if h.held == 0 {
		delete(b.holds, h)
	}
	b.broadcastLocked()
}

// release gives back everything the hold has.
func (h *appendHold) release() {
	h.b.mu.Lock()
	n := h.held
	h.b.mu.Unlock()
	if n > 0 {
		h.shrink(n)
	}
}
