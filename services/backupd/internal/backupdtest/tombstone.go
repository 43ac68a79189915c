package backupdtest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Tombstones checks that a deletion is never undone: once a site showed a
// receive row with the deleted mark, every later read of that row at that
// site must show the mark too (the column only rises, SPEC §3), whatever
// crashes or link faults happen in between. Safe for concurrent use.
type Tombstones struct {
	mu   sync.Mutex
	seen map[string]map[model.Key]bool // site -> receive rows seen deleted
}

// NewTombstones returns a checker that has seen nothing yet.
func NewTombstones() *Tombstones {
	return &Tombstones{seen: map[string]map[model.Key]bool{}}
}

// Observe reads the receive rows keys at site through c (admin role) and
// returns an error naming the first row that the site showed deleted
// before and now shows undeleted or not at all. A row not yet at the site,
// or not yet deleted there, is fine (replication may be behind). It stops
// without error at a read that fails otherwise (dbd down or ctx done) and
// reports how many rows it read.
func (ts *Tombstones) Observe(ctx context.Context, site string, c *client.Client, keys []model.Key) (int, error) {
	ts.mu.Lock()
	seen := ts.seen[site]
	if seen == nil {
		seen = map[model.Key]bool{}
		ts.seen[site] = seen
	}
	ts.mu.Unlock()
	for i, k := range keys {
		row, err := c.FindMeta(ctx, model.Receive, k)
		deleted := err == nil && row.State.Col(model.ColDeleted) == model.FlagSet
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			return i, nil
		}
		ts.mu.Lock()
		was := seen[k]
		if deleted {
			seen[k] = true
		}
		ts.mu.Unlock()
		if was && !deleted {
			if err != nil {
				return i + 1, fmt.Errorf("site %s: receive row %s was deleted and is now gone: %v", site, k, err)
			}
			return i + 1, fmt.Errorf("site %s: receive row %s was deleted and is now undeleted (deleted = %d)", site, k, row.State.Col(model.ColDeleted))
		}
	}
	return len(keys), nil
}

// Seen returns how many rows site has shown deleted so far.
func (ts *Tombstones) Seen(site string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.seen[site])
}
