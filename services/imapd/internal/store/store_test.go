package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/flags"
)

// batchDB takes every batch; the other methods are not used.
type batchDB struct {
	DB
	batches int
}

func (d *batchDB) Batch(_ context.Context, reqs []wire.Request) ([]wire.Result, error) {
	d.batches++
	return make([]wire.Result, len(reqs)), nil
}

// TestSetColumnsKeywordCacheBounded: the keyword names SetColumns learns
// are kept within the same bound as those Keyword reads. Before, every
// keyword a client STOREd stayed in the map for the life of the process:
// a client setting new keywords on mail after mail grew imapd's memory
// without end.
func TestSetColumnsKeywordCacheBounded(t *testing.T) {
	db := &batchDB{}
	s := New(db, mailbox.Options{})
	const n = maxKeywordsCached + 5000
	texts := make([][]byte, 0, n)
	for i := range n {
		texts = append(texts, flags.KeywordContent(fmt.Sprintf("kw%d!", i)))
	}
	if err := s.SetColumns(context.Background(), texts, nil); err != nil {
		t.Fatal(err)
	}
	if db.batches == 0 {
		t.Fatal("no batch written")
	}
	if got := len(s.keywords); got > maxKeywordsCached {
		t.Fatalf("%d keyword names cached, want at most %d", got, maxKeywordsCached)
	}
}
