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
// content in two tables gets two unrelated keys. The result is shared:
// callers must not change it.
func keyDomain(t Table) []byte {
	if t.Valid() {
		return keyDomains[t]
	}
	return []byte("twinmx/row/v1/" + t.String() + "\x00")
}

// keyDomains holds the domain of every table, made once: KeyOf runs a
// score of times for each mail received, in smtpd and again in dbd.
var keyDomains = func() (d [Config + 1][]byte) {
	for t := Body; t <= Config; t++ {
		d[t] = []byte("twinmx/row/v1/" + t.String() + "\x00")
	}
	return d
}()

// keyOnStack is the largest domain and content KeyOf hashes from a buffer
// on the stack, without a hash object on the heap: the small rows looked
// up most (receive, mail, msgid, mailbox). For larger contents the copy
// into the buffer costs what the heap object does.
const keyOnStack = 128

// NewKeyHash returns a hash that, after the content is written to it, yields
// the row key in its Sum. It lets large contents be keyed while streaming.
func NewKeyHash(t Table) hash.Hash {
	h := sha256.New()
	h.Write(keyDomain(t))
	return h
}

// KeyOf returns the key of the row with the given content in table t.
func KeyOf(t Table, content []byte) Key {
	if d := keyDomain(t); len(d)+len(content) <= keyOnStack {
		var buf [keyOnStack]byte
		n := copy(buf[:], d)
		n += copy(buf[n:], content)
		return Key(sha256.Sum256(buf[:n]))
	}
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
