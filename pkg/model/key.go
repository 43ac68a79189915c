package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// KeySize is the size of a row key in bytes.
const KeySize = 32

// Key identifies a row on every site: the SHA-256 of a domain string naming
// the table, followed by the row's content (SPEC §3). The same content in the
// same table has the same key everywhere, so sites never need to agree on
// numbers.
type Key [KeySize]byte

// ErrBadKey is returned by ParseKey for a malformed key.
var ErrBadKey = errors.New("model: malformed key")

// keyDomain separates tables (and future versions of the scheme), so equal
// content in two tables gets two unrelated keys.
func keyDomain(t Table) []byte {
	return []byte("twinmx/row/v1/" + t.String() + "\x00")
}

// NewKeyHash returns a hash that, after the content is written to it, yields
// the row key in its Sum. It lets large contents be keyed while streaming.
func NewKeyHash(t Table) hash.Hash {
	h := sha256.New()
	h.Write(keyDomain(t))
	return h
}

// KeyOf returns the key of the row with the given content in table t.
func KeyOf(t Table, content []byte) Key {
	h := NewKeyHash(t)
	h.Write(content)
	var k Key
	h.Sum(k[:0])
	return k
}

// KeyFromHash returns the key held by a hash made with NewKeyHash.
func KeyFromHash(h hash.Hash) Key {
	var k Key
	h.Sum(k[:0])
	return k
}

// String returns the key in lower-case hex.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is the zero key (no row has it in practice).
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey parses the 64-digit hex form returned by String.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*KeySize {
		return k, fmt.Errorf("%w: want %d hex digits, got %d", ErrBadKey, 2*KeySize, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}
