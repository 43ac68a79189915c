package session

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// Budget bounds the memory that all sessions together hold for message
// data, so a burst of large mails waits (and finally gets a 452) instead of
// exhausting the host.
type Budget struct {
	total int64
	sem   *semaphore.Weighted
}

// NewBudget returns a budget of total bytes.
func NewBudget(total int64) *Budget {
	return &Budget{total: total, sem: semaphore.NewWeighted(total)}
}

// Acquire takes n bytes, waiting until they are free or ctx is done.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n > b.total {
		return fmt.Errorf("acquire %d bytes: more than the budget of %d", n, b.total)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return fmt.Errorf("acquire %d bytes of message memory: %w", n, err)
	}
	return nil
}

// TryAcquire takes n bytes if they are free now and nobody waits for
// memory; it reports whether it did.
func (b *Budget) TryAcquire(n int64) bool { return n <= b.total && b.sem.TryAcquire(n) }

// Release returns n bytes.
func (b *Budget) Release(n int64) { b.sem.Release(n) }
