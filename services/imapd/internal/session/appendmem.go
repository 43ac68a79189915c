package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
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
// moment of the copy (MinAppendMemory): some 75 MiB of peak for a
// 60 MiB mail, which TestAppendMemory's bound allows.
const (
	appendFirstChunk = 4 << 10
	appendMaxChunk   = 1 << 20
)

// MinAppendMemory is the least Config.AppendMemory and the least
// Config.AppendMemoryPerAccount (81 MiB): one APPEND of the APPENDLIMIT
// at its peak (readAppend), so such a mail can always be stored when no
// other APPEND runs, or none of the same account.
const MinAppendMemory = appendLimit + appendLimit/4 + appendMaxChunk

// errNoRoom is an APPEND's failure to get memory from the budget: it
// waited too long, or it gave up to end a deadlock (appendBudget).
var errNoRoom = errors.New("session: no room in the APPEND memory")

// errAccountNoRoom is errNoRoom when the pool had room and the account's
// share did not (errors.Is(err, errNoRoom) holds for it too), so that
// the refusal can say so and be counted apart.
var errAccountNoRoom = fmt.Errorf("%w: the account's share is taken", errNoRoom)

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
// (Config.AppendMemory), of which the APPENDs of one account hold at most
// a share (Config.AppendMemoryPerAccount). It is safe for concurrent use.
//
// The share exists because the pool alone is first come, first served:
// one account with a dozen connections, each APPENDing a large mail at
// once, could hold the whole pool, and every other user's APPEND would
// wait and fail (TestAppendMemoryPerAccount). With the share, what one
// account holds is bounded whatever it does, and the rest of the pool
// stays for the others. The share is at least MinAppendMemory, so an
// account's lone APPEND always fits it.
//
// An APPEND that finds no room, in the pool or in its account's share,
// waits (up to Config.AppendWait) for another to give memory back; for
// the share, that is one of the same account's APPENDs, so a client that
// sends several large mails on parallel connections has them read one
// after another rather than refused. Waiting while holding memory can
// deadlock: two half-read APPENDs each waiting for what the other holds
// would both wait until they time out, and both fail. So when the
// APPENDs that hold memory and wait cannot all go on
// (breakDeadlockLocked), the one of them that took its first bytes last
// gives up at once (errNoRoom: NO [LIMIT]) and its memory goes to the
// others; then the next, until one can go on (wait-die). One that reads
// on is not waiting: it will finish, or fail, and give its memory back.
// An APPEND that holds nothing may wait: it keeps no one waiting.
type appendBudget struct {
	mu         sync.Mutex
	size       int64
	perAccount int64 // what one account's holds may hold together
	free       int64
	// accounts is what each account's holds hold; an account that holds
	// nothing is not in it.
	accounts map[model.Key]int64
	next     uint64 // the order of the next hold to take its first bytes
	holds    map[*appendHold]struct{}
	// changed is closed, and replaced, when free grows or a hold is
	// told to give up: waiters look again.
	changed chan struct{}
}

// newAppendBudget returns a budget of size bytes of which one account
// may hold perAccount (at most size).
func newAppendBudget(size, perAccount int64) *appendBudget {
	return &appendBudget{size: size, perAccount: min(perAccount, size), free: size,
		accounts: map[model.Key]int64{}, holds: map[*appendHold]struct{}{}, changed: make(chan struct{})}
}

// hold returns an empty hold on b for one APPEND of the account acct; the
// caller must call its release.
func (b *appendBudget) hold(acct model.Key) *appendHold { return &appendHold{b: b, acct: acct} }

// used returns the memory held (tests).
func (b *appendBudget) used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size - b.free
}

// accountUsed returns the memory the holds of acct hold (tests).
func (b *appendBudget) accountUsed(acct model.Key) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accounts[acct]
}

// appendHold is one APPEND's memory from an appendBudget. It is used by
// one goroutine.
type appendHold struct {
	b    *appendBudget
	acct model.Key // the account whose share it counts in
	// The fields below are guarded by b.mu.
	order   uint64 // when it took its first bytes: lower is earlier
	held    int64
	waiting bool
	want    int64 // what it waits for, while waiting
	doomed  bool  // told to give up, to end a deadlock
}

// fitsLocked reports whether n more bytes for the account acct fit both
// the pool and the account's share.
func (b *appendBudget) fitsLocked(acct model.Key, n int64) bool {
	return n <= b.free && b.accounts[acct]+n <= b.perAccount
}

// noRoomLocked is the error of a grow of n bytes for h that got none:
// errAccountNoRoom when the pool has room and h's account's share has
// not, else errNoRoom.
func (b *appendBudget) noRoomLocked(h *appendHold, n int64) error {
	if n <= b.free && !b.fitsLocked(h.acct, n) {
		return errAccountNoRoom
	}
	return errNoRoom
}

// grow takes n more bytes, waiting for room in the pool and in the
// account's share until ctx ends. It fails with errNoRoom (errAccountNoRoom
// when the share was what lacked room) when ctx ends first or when the
// hold is told to give up (see appendBudget).
func (h *appendHold) grow(ctx context.Context, n int64) error {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if h.doomed {
			h.waiting = false
			return fmt.Errorf("%w: given up to let an earlier APPEND go on", b.noRoomLocked(h, n))
		}
		if b.fitsLocked(h.acct, n) {
			b.free -= n
			b.accounts[h.acct] += n
			if h.held == 0 {
				b.next++
				h.order = b.next
				b.holds[h] = struct{}{}
			}
			h.held += n
			h.waiting = false
			return nil
		}
		h.waiting, h.want = true, n
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
			return fmt.Errorf("%w: waited for %d bytes: %w", b.noRoomLocked(h, n), n, ctx.Err())
		}
	}
}

// breakDeadlockLocked tells the last of the holds that wait to give up
// when the holds that hold memory and wait cannot all go on. It plays
// the waits forward: every hold that reads on, or gives up already, gives
// its memory back; then every waiting hold whose request fits the pool
// and its account's share so grown takes it, finishes and gives back all
// it holds; and so on until no more fit. The waiting holds left wait for
// one another's memory, and no other hold gives them any: a deadlock.
//
// The rule before the shares, "when every hold that holds memory waits,
// the last gives up", is this with one pool: with shares, two holds of
// one account can wait for each other's share while other accounts read
// on, and that rule would have let them wait until they timed out. Holds
// that hold nothing are left out: they keep no one waiting.
//
// It costs O(holds) when a pass settles every wait, and O(holds²) at
// worst; it runs only when an APPEND finds no room.
func (b *appendBudget) breakDeadlockLocked() {
	var stuck []*appendHold
	free := b.free
	var gone map[model.Key]int64 // given back, per account
	for h := range b.holds {
		if h.waiting && !h.doomed {
			stuck = append(stuck, h)
			continue
		}
		if gone == nil {
			gone = map[model.Key]int64{}
		}
		free += h.held
		gone[h.acct] += h.held
	}
	for moved := true; moved && len(stuck) > 0; {
		moved = false
		for i := 0; i < len(stuck); {
			h := stuck[i]
			if h.want > free || b.accounts[h.acct]-gone[h.acct]+h.want > b.perAccount {
				i++
				continue
			}
			if gone == nil {
				gone = map[model.Key]int64{}
			}
			free += h.held
			gone[h.acct] += h.held
			stuck[i] = stuck[len(stuck)-1]
			stuck = stuck[:len(stuck)-1]
			moved = true
		}
	}
	if len(stuck) == 0 {
		return
	}
	last := stuck[0]
	for _, h := range stuck[1:] {
		if h.order > last.order {
			last = h
		}
	}
	last.doomed = true
	b.broadcastLocked()
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
	if b.accounts[h.acct] -= n; b.accounts[h.acct] <= 0 {
		delete(b.accounts, h.acct)
	}
	if h.held == 0 {
		delete(b.holds, h)
	}
	b.broadcastLocked()
}

// release gives back everything the hold has. It is safe to call more
// than once.
func (h *appendHold) release() {
	h.b.mu.Lock()
	n := h.held
	h.b.mu.Unlock()
	if n > 0 {
		h.shrink(n)
	}
}
