package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/twinmx/twinmx/pkg/model"
)

// Key spaces of the Pebble keyspace (see doc.go). The first byte of every
// Pebble key names its space.
const (
	spaceRow     = 'r' // r table key            -> rowMeta
	spaceContent = 'c' // c table key chunk(BE4) -> content chunk
	spaceNumber  = 'n' // n table rowno(BE8)     -> key
	spaceStamp   = 's' // s stamp(BE8)           -> table key
	spaceCursor  = 'k' // k name                 -> cursor(BE8)
	spaceCount   = 'm' // m table                -> row count(BE8)
	spaceChild   = 'x' // x table parent rowno   -> key, then the row's meta value (childValue)
	spaceLayout  = 'v' // v name                 -> layout facts (which indexes are complete)
)

// childIndexDone marks that the child index is complete and covering:
// every row of an indexed table (model.Indexed) whose content names a
// parent has its entry, the entry carries the row's meta value
// (childValue), and the row's content is inline. A store without it
// (written before the index existed, before text rows were indexed
// under 'vx2', or before entries carried the meta, with 'vx1' and 'vx2'
// only) has its index rebuilt once, at open (see buildChildIndex).
var childIndexDone = []byte{spaceLayout, 'x', '3'}

// oldChildIndexMarkers are the markers of the earlier index layouts
// (receive rows, then text rows, with the row key alone as the value):
// the rebuild removes them.
var oldChildIndexMarkers = [][]byte{{spaceLayout, 'x', '1'}, {spaceLayout, 'x', '2'}}

// incarnationKey holds a random number drawn when the store is created: a
// store rebuilt from the other site (same rows, new local row numbers) has
// a new one, so IMAP UIDVALIDITY values derived from it change too.
var incarnationKey = []byte{spaceLayout, 'i', 'd'}

// chunkSize is the largest content chunk stored under one Pebble key. It
// bounds the memory of a streamed read and keeps values far below Pebble's
// large-value thresholds. Chunks go to blob files (see valueSeparation),
// and Pebble's blob writer allocates fresh buffers for a block that holds
// a value larger than its block size: with 256 KiB chunks a flush of a
// 50 MiB content left about 110 MiB of such garbage and dbd's peak memory
// reached 3.8 times the content (TestLargeContentRoundTrip); with 64 KiB
// chunks, 2.1 times. Readers take chunks by prefix, of whatever size:
// stores written with 256 KiB chunks read the same.
const chunkSize = 64 << 10

func rowKey(t model.Table, k model.Key) []byte {
	return appendRowKey(make([]byte, 0, rowKeySize), t, k)
}

// rowKeySize is the length of a row key.
const rowKeySize = 2 + model.KeySize

// appendRowKey appends rowKey(t, k) to b. The append forms of the key
// functions let the writer build a group's keys in one scratch buffer.
func appendRowKey(b []byte, t model.Table, k model.Key) []byte {
	b = append(b, spaceRow, byte(t))
	return append(b, k[:]...)
}

func contentKey(t model.Table, k model.Key, chunk uint32) []byte {
	return appendContentKey(make([]byte, 0, 2+model.KeySize+4), t, k, chunk)
}

func appendContentKey(b []byte, t model.Table, k model.Key, chunk uint32) []byte {
	b = append(b, spaceContent, byte(t))
	b = append(b, k[:]...)
	return binary.BigEndian.AppendUint32(b, chunk)
}

func contentPrefix(t model.Table, k model.Key) []byte {
	b := make([]byte, 0, 2+model.KeySize)
	b = append(b, spaceContent, byte(t))
	return append(b, k[:]...)
}

// numbered reports whether every row of table t has a number index entry.
// The rows of a mail's content (body, header, received, mail, msgid) are
// never listed by number but by a scan (dbctl scan), and were five of the
// eight number index entries of a received mail; since 2026-11-30 only
// the highest row number of each group commit gets an entry there, so
// that the last entry still gives the next row number at open (recover;
// a dbd from before this change reads it the same way). View.Newest
// reads those tables' rows instead.
func numbered(t model.Table) bool {
	switch t {
	case model.Body, model.Header, model.Received, model.Mail, model.MsgID:
		return false
	}
	return true
}

func appendNumberKey(b []byte, t model.Table, rowno uint64) []byte {
	b = append(b, spaceNumber, byte(t))
	return binary.BigEndian.AppendUint64(b, rowno)
}

func childKey(t model.Table, parent model.Key, rowno uint64) []byte {
	return appendChildKey(make([]byte, 0, 2+model.KeySize+8), t, parent, rowno)
}

func appendChildKey(b []byte, t model.Table, parent model.Key, rowno uint64) []byte {
	b = append(b, spaceChild, byte(t))
	b = append(b, parent[:]...)
	return binary.BigEndian.AppendUint64(b, rowno)
}

// childValue is the value of a child index entry: the row's key, then
// the row's meta value exactly as it is under its row key. The writer
// writes both in the same batch whenever the row changes, so listing a
// parent's children reads the index alone, with no point read per child
// (an IMAP SELECT of 10,000 mails spent two thirds of its CPU on those
// reads).
func childValue(k model.Key, meta []byte) []byte {
	b := make([]byte, 0, model.KeySize+len(meta))
	b = append(b, k[:]...)
	return append(b, meta...)
}

// decodeChildValue splits a child index entry's value.
func decodeChildValue(v []byte) (model.Key, rowMeta, error) {
	var k model.Key
	if len(v) < model.KeySize {
		return k, rowMeta{}, fmt.Errorf("store: corrupt child index entry of %d bytes", len(v))
	}
	copy(k[:], v)
	m, err := decodeRowMeta(v[model.KeySize:])
	return k, m, err
}

func childPrefix(t model.Table, parent model.Key) []byte {
	b := make([]byte, 0, 2+model.KeySize)
	b = append(b, spaceChild, byte(t))
	return append(b, parent[:]...)
}

func stampKey(stamp uint64) []byte { return appendStampKey(make([]byte, 0, 9), stamp) }

func appendStampKey(b []byte, stamp uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, spaceStamp), stamp)
}

func cursorKey(name string) []byte { return append([]byte{spaceCursor}, name...) }

func countKey(t model.Table) []byte { return []byte{spaceCount, byte(t)} }

// rowRef is a (table, key) pair: the identity of a row.
type rowRef struct {
	Table model.Table
	Key   model.Key
}

// appendChange appends the value of a change-log entry to b: the row,
// then the name of the merge cursor the row's current state came from, if
// any (see staged.origin).
func appendChange(b []byte, r rowRef, origin string) []byte {
	b = append(b, byte(r.Table))
	b = append(b, r.Key[:]...)
	return append(b, origin...)
}

// decodeChange splits a change-log value. Entries written before origins
// existed are a bare row reference: origin "".
func decodeChange(b []byte) (rowRef, string, error) {
	if len(b) < 1+model.KeySize {
		return rowRef{}, "", fmt.Errorf("store: corrupt change entry %x", b)
	}
	ref, err := decodeRowRef(b[:1+model.KeySize])
	return ref, string(b[1+model.KeySize:]), err
}

func decodeRowRef(b []byte) (rowRef, error) {
	var r rowRef
	if len(b) != 1+model.KeySize || !model.Table(b[0]).Valid() {
		return r, fmt.Errorf("store: corrupt row reference %x", b)
	}
	r.Table = model.Table(b[0])
	copy(r.Key[:], b[1:])
	return r, nil
}

// rowMeta is everything dbd keeps about a row besides its content.
type rowMeta struct {
	RowNo uint64 // local row number, per table, from 1
	Size  uint64 // content length
	Stamp uint64 // change stamp of the latest change
	State model.State
	// Inline is the content when it is stored in the row's meta value
	// (non-empty contents up to inlineMax), nil when it is in content
	// chunks.
	Inline []byte
}

// inlineMax is the largest content kept in the row's meta value instead of
// its own content keys: one Pebble key less per row for the many small
// rows (mail, receive, msgid, header, throw-in ...). The meta value is
// rewritten by every set, so large contents stay in chunks.
const inlineMax = 4 << 10

// encode lays out a meta value: uvarint rowno, size, stamp, the state,
// then — for an inline row — exactly Size content bytes. A value whose
// bytes end with the state is a row whose content is in chunks (every row
// written before inline contents existed, too).
func (m *rowMeta) encode() []byte { return m.appendTo(make([]byte, 0, 32+len(m.Inline))) }

// appendTo appends the meta value (encode) to b.
func (m *rowMeta) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, m.RowNo)
	b = binary.AppendUvarint(b, m.Size)
	b = binary.AppendUvarint(b, m.Stamp)
	b = m.State.AppendBinary(b)
	return append(b, m.Inline...)
}

// splitRowMeta is decodeRowMetaAlias without decoding the state: it
// returns the meta's numbers, and from where its state starts, the rest of
// the value, in which the state's encoding takes the first stateLen bytes
// and the inline content (if any) the others.
func splitRowMeta(b []byte) (m rowMeta, tail []byte, stateLen int, err error) {
	var n int
	for _, p := range []*uint64{&m.RowNo, &m.Size, &m.Stamp} {
		*p, n = binary.Uvarint(b)
		if n <= 0 {
			return m, nil, 0, fmt.Errorf("store: corrupt row meta")
		}
		b = b[n:]
	}
	enc, rest, err := model.SplitState(b)
	if err != nil {
		return m, nil, 0, fmt.Errorf("store: corrupt row state: %v", err)
	}
	if len(rest) != 0 && uint64(len(rest)) != m.Size {
		return m, nil, 0, fmt.Errorf("store: corrupt row meta: %d bytes after the state of a row of %d", len(rest), m.Size)
	}
	return m, b, len(enc), nil
}

func decodeRowMeta(b []byte) (rowMeta, error) {
	m, err := decodeRowMetaAlias(b)
	if m.Inline != nil {
		m.Inline = bytes.Clone(m.Inline) // the value's buffer is Pebble's
	}
	return m, err
}

// decodeRowMetaAlias is decodeRowMeta with the inline content a window on
// b, valid as long as b is.
func decodeRowMetaAlias(b []byte) (rowMeta, error) {
	var m rowMeta
	var n int
	for _, p := range []*uint64{&m.RowNo, &m.Size, &m.Stamp} {
		*p, n = binary.Uvarint(b)
		if n <= 0 {
			return m, fmt.Errorf("store: corrupt row meta")
		}
		b = b[n:]
	}
	st, rest, err := model.DecodeState(b)
	if err != nil {
		return m, fmt.Errorf("store: corrupt row state: %v", err)
	}
	if len(rest) != 0 && uint64(len(rest)) != m.Size {
		return m, fmt.Errorf("store: corrupt row meta: %d bytes after the state of a row of %d", len(rest), m.Size)
	}
	m.State = st
	if len(rest) > 0 {
		m.Inline = rest
	}
	return m, nil
}
