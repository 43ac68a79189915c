package store

import (
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
)

// chunkSize is the largest content chunk stored under one Pebble key. It
// bounds the memory of a streamed read and keeps values far below Pebble's
// large-value thresholds.
const chunkSize = 256 << 10

func rowKey(t model.Table, k model.Key) []byte {
	b := make([]byte, 0, 2+model.KeySize)
	b = append(b, spaceRow, byte(t))
	return append(b, k[:]...)
}

func contentKey(t model.Table, k model.Key, chunk uint32) []byte {
	b := make([]byte, 0, 2+model.KeySize+4)
	b = append(b, spaceContent, byte(t))
	b = append(b, k[:]...)
	return binary.BigEndian.AppendUint32(b, chunk)
}

func contentPrefix(t model.Table, k model.Key) []byte {
	b := make([]byte, 0, 2+model.KeySize)
	b = append(b, spaceContent, byte(t))
	return append(b, k[:]...)
}

func numberKey(t model.Table, rowno uint64) []byte {
	b := []byte{spaceNumber, byte(t)}
	return binary.BigEndian.AppendUint64(b, rowno)
}

func stampKey(stamp uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{spaceStamp}, stamp)
}

func cursorKey(name string) []byte { return append([]byte{spaceCursor}, name...) }

func countKey(t model.Table) []byte { return []byte{spaceCount, byte(t)} }

// rowRef is a (table, key) pair: the identity of a row.
type rowRef struct {
	Table model.Table
	Key   model.Key
}

func (r rowRef) encode() []byte {
	b := make([]byte, 0, 1+model.KeySize)
	b = append(b, byte(r.Table))
	return append(b, r.Key[:]...)
}

// encodeChange is the value of a change-log entry: the row, then the name
// of the merge cursor the row's current state came from, if any (see
// staged.origin).
func encodeChange(r rowRef, origin string) []byte {
	return append(r.encode(), origin...)
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
}

func (m *rowMeta) encode() []byte {
	b := make([]byte, 0, 32)
	b = binary.AppendUvarint(b, m.RowNo)
	b = binary.AppendUvarint(b, m.Size)
	b = binary.AppendUvarint(b, m.Stamp)
	return m.State.AppendBinary(b)
}

func decodeRowMeta(b []byte) (rowMeta, error) {
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
	if err != nil || len(rest) != 0 {
		return m, fmt.Errorf("store: corrupt row state: %v", err)
	}
	m.State = st
	return m, nil
}
