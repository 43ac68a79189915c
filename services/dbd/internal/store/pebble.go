package store

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// formatVersion is the Pebble format dbd writes: the first with value
// separation (blob files). Open ratchets an older store to it, once and
// for good: a dbd built before it cannot open the store afterwards.
const formatVersion = pebble.FormatValueSeparation

// valueSeparation keeps content chunks out of compactions: a flush writes
// each chunk value of blobMinSize bytes or more to a blob file once, and
// the sstables hold only a reference to it, so the compactions that
// reorder the randomly keyed content keys move 50-byte references, not
// the contents. Without it a 10 KB content was rewritten by about eight
// compactions (disk writes ≈ 8.5 × WAL bytes in a 20 s run of 10 KB
// inserts); every byte a compaction writes lengthens the WAL fsyncs that
// acknowledgements wait for.
//
// MaxBlobReferenceDepth bounds how many blob files one sstable's values
// may be spread over; past it a compaction rewrites the values into new
// blob files. Content keys are content hashes, so every flush's blob file
// spans the whole key range and each compaction into the base level adds
// to the depth: at 10 (what Pebble's own tools use) the values were
// rewritten every few compactions (disk writes 5.0 × WAL bytes in the run
// above, and dbctl bench's p99 latency at 1 in flight after a 10 KB run
// stayed at 6-8 ms); at 100, 3.1 × and 2.0-2.1 ms. A content read still
// reads one blob file. Contents are never deleted, so blob files gather
// garbage only from those rewrites; TargetGarbageRatio lets Pebble rewrite
// a blob file, at least RewriteMinimumAge old, once a fifth of all blob
// bytes is garbage.
var valueSeparation = pebble.ValueSeparationPolicy{
	Enabled:               true,
	MinimumSize:           blobMinSize,
	MaxBlobReferenceDepth: 100,
	RewriteMinimumAge:     5 * time.Minute,
	TargetGarbageRatio:    0.2,
}

// blobMinSize is the smallest chunk value kept in a blob file. Every
// content above inlineMax has a first chunk above it; only the short tail
// chunk of a large content may stay in its sstable.
const blobMinSize = inlineMax

// contentSpans is the span policy that limits value separation to the
// content space: row metas (which hold contents up to inlineMax) are
// rewritten by every set, so in a blob file each set would leave garbage,
// and each read of a row would take one more block read. Pebble calls it
// with the first key of each output sstable and ends the sstable at the
// returned end key.
func contentSpans(start []byte) (pebble.SpanPolicy, []byte, error) {
	inPlace := pebble.SpanPolicy{ValueStoragePolicy: pebble.ValueStorageLowReadLatency}
	switch {
	case len(start) == 0 || start[0] < spaceContent:
		return inPlace, []byte{spaceContent}, nil
	case start[0] == spaceContent:
		return pebble.SpanPolicy{}, []byte{spaceContent + 1}, nil
	default:
		return inPlace, nil, nil
	}
}

// DefaultMemTableSize is dbd's memtable unless --memtable says otherwise:
// Pebble's own 4 MiB. A larger one (64 MiB, CockroachDB's choice) reads
// recent rows without block loads (IMAP FETCH of new mail: dbd's CPU a
// third lower) and writes faster when nothing is looked up, but every
// lookup seeks the memtable's skiplist first, and in a 64 MiB arena that
// seek misses the CPU caches: strict mode, where each mail takes dozens of
// lookups on both sites, lost 15-25 % of its rate. Figures in
// docs/dbd.md, "Storage".
const DefaultMemTableSize = 4 << 20

// l0CompactionThreshold is Pebble's L0CompactionThreshold: 8 instead of
// Pebble's 4. Pebble compacts L0 into the base level once L0 holds half
// that many overlapping tables (sublevels; its score is twice the depth
// over the threshold): 4 instead of 2. Row keys are content hashes, so
// every flushed table overlaps the whole base level, and each L0
// compaction rewrites all of it whatever L0 brings: more tables per
// compaction makes fewer of those rewrites. Every table in L0 has a
// bloom filter, so a lookup of a new row pays a filter probe per
// sublevel more, not a block read. Writes stop at three times it (24
// sublevels), as with Pebble's defaults (4 and 12). Figures in
// docs/dbd.md, "Storage".
const l0CompactionThreshold = 8

// blockSize is the sstables' data block size: 32 KiB, CockroachDB's
// choice, instead of Pebble's 4 KiB. Row keys are content hashes, so a
// folder's rows lie spread over every table, and reading a folder (an
// IMAP FETCH or POP3 RETR of every mail) loads most blocks once: larger
// blocks make eight times fewer block loads, each a pread, a checksum, a
// decompression and a cache insertion. IMAP FETCH BODY[] of the corpus
// (4,214 mails, dbd's cache cold), three alternating runs each on a slow
// host: dbd's CPU 0.305 s with 4 KiB, 0.253 s with 32 KiB, 0.225 s with
// 64 KiB; warm and in strict-mode SMTP (row lookups, mostly in the
// memtable and cached blocks) no difference beyond the noise. 64 KiB was
// not taken: a single cold point read decompresses the whole block, and
// the gain over 32 KiB was within the spread. Figures in docs/dbd.md,
// "Storage".
const blockSize = 32 << 10

// MaxMemTableSize is the largest memtable dbd accepts; Pebble refuses 4 GiB
// and more, and a 32-bit dbd could not map even that.
const MaxMemTableSize = 1 << 30

// PebbleOptions returns the Pebble options dbd runs with: Pebble's
// defaults with the given block cache, plus
//
//   - bloom filters (10 bits a key) on every level, because every insert
//     first asks whether its content key exists, and for a new row the
//     answer is no: without filters that Get searches every level (no
//     measurable change at dbctl bench's few hundred thousand rows; it
//     matters as a site's data grows to many levels);
//   - format formatVersion and value separation of content chunks (see
//     valueSeparation);
//   - a memtable of memTableSize bytes (DefaultMemTableSize unless the
//     operator chose);
//   - L0 compacted later (l0CompactionThreshold);
//   - 32 KiB data blocks (blockSize).
//
// dbctl bench uses the same options for its embedded baseline, so the
// comparison is like for like.
func PebbleOptions(cache *pebble.Cache, memTableSize int64) *pebble.Options {
	o := &pebble.Options{Cache: cache, FormatMajorVersion: formatVersion, MemTableSize: uint64(memTableSize)}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].BlockSize = blockSize
	}
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy { return valueSeparation }
	o.Experimental.SpanPolicyFunc = contentSpans
	o.L0CompactionThreshold = l0CompactionThreshold
	o.L0StopWritesThreshold = 3 * l0CompactionThreshold
	return o
}
