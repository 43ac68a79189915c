package store

import (
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// probe looks rows up for the writer, through one iterator per group that
// consults the bloom filters of every level. pebble.DB.Get and plain
// iterators skip the filters of the bottom level (L6), which holds most of
// the data: they read an L6 data block for every key not found above.
// find-or-insert mostly asks for keys that do not exist yet (a new mail's
// rows are named by their content), so each new row cost a block read,
// from disk once the store outgrows the page cache. With the filters,
// such a miss costs a filter probe (filter blocks stay in the block cache)
// and about one in a hundred reads a block. Views (readers) mostly find
// what they ask for and keep plain iterators.
type probe struct {
	it *pebble.Iterator
}

func newProbe(db *pebble.DB) (*probe, error) {
	it, err := db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, err
	}
	return &probe{it: it}, nil
}

// Get returns key's value, valid until the next Get.
func (p *probe) Get(key []byte) ([]byte, io.Closer, error) { return iterGet(p.it, key) }

func (p *probe) close() {
	// An iterator's error was already returned by Get.
	_ = p.it.Close()
}
