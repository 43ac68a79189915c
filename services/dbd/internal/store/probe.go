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
// such a miss costs a filter probe and about one in a hundred reads a
// block. Views (readers) use the filters too: a prefix seek positions
// every level, so finding a recent row in a level above L6 also read an L6
// data block, five a mail for a mail client reading new mail.
//
// That holds while the filter blocks stay in the block cache. Pebble keeps
// one filter block per table, hundreds of kilobytes for a large L6 table:
// read from disk to answer one lookup, it costs far more than the data
// block it spares. So the probe leaves the L6 filters out once they would
// take more than half the cache (filtersFit); --cache raises the cache.
type probe struct {
	it *pebble.Iterator
}

func newProbe(db *pebble.DB, useL6Filters bool) (*probe, error) {
	it, err := db.NewIter(&pebble.IterOptions{UseL6Filters: useL6Filters})
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

// filterBytesPerRow bounds the bloom filter bytes of one row: 10 bits a
// key (PebbleOptions) for the row's meta, number, change-log and child
// index keys. Content chunks of large rows add a key per 64 KiB, which
// this leaves out.
const filterBytesPerRow = 4 * 10 / 8

// filtersFit reports whether the filters of all rows fit in half the block
// cache, the rest left for index and data blocks. It logs when the answer
// changes. Only the writer calls it, and Open before the writer starts.
func (s *Store) filtersFit() bool {
	var rows uint64
	for _, n := range s.count {
		rows += n
	}
	fit := rows*filterBytesPerRow <= uint64(s.opts.CacheSize)/2
	if fit == s.l6Off.Load() {
		s.l6Off.Store(!fit)
		if fit {
			s.log.Info("new-row lookups use the bottom level's bloom filters again", "rows", rows, "cache_bytes", s.opts.CacheSize)
		} else {
			s.log.Warn("the bottom level's bloom filters no longer fit half the block cache: new-row lookups read data blocks instead; raise dbd --cache", "rows", rows, "cache_bytes", s.opts.CacheSize)
		}
	}
	return fit
}
