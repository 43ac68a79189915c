package store

import (
	"bytes"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// probe looks rows up for the writer, through one iterator per group that
// consults the bloom filters of every level. pebble.DB.Get skips the
// filters of the bottom level (L6), which holds most of the data: it reads
// an L6 data block for every key it does not find above. find-or-insert
// mostly asks for keys that do not exist yet (a new mail's rows are named
// by their content), so with Get each new row cost a block read, from disk
// once the store outgrows the page cache. With the filters, such a miss
// costs a filter probe (filter blocks stay in the block cache) and about
// one false positive in a hundred reads a block.
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

// Get returns key's value, valid until the next Get; the closer does
// nothing (getter's contract comes from pebble.DB.Get).
func (p *probe) Get(key []byte) ([]byte, io.Closer, error) {
	// The default comparer's prefix of a key is the whole key, so
	// SeekPrefixGE finds key itself or nothing.
	if !p.it.SeekPrefixGE(key) || !bytes.Equal(p.it.Key(), key) {
		if err := p.it.Error(); err != nil {
			return nil, nil, err
		}
		return nil, nil, pebble.ErrNotFound
	}
	v, err := p.it.ValueAndErr()
	if err != nil {
		return nil, nil, err
	}
	return v, nopCloser{}, nil
}

func (p *probe) close() {
	// An iterator's error was already returned by Get.
	_ = p.it.Close()
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
