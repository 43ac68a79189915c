package wire

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/curve25519"
)

// Key files (docs/wire.md §1). A secret key file is
//
//	twinmx-wire-secret-key-v1\n
//	<standard base64 of the 32-byte X25519 private key>\n
//
// with mode 0600, and the public key file next to it (same path + ".pub") is
//
//	twinmx-wire-public-key-v1\n
//	<standard base64 of the 32-byte X25519 public key>\n
//
// with mode 0644. The first line names the type, so a secret file handed to
// LoadPublicKey (or the other way round) is refused instead of misused.

const (
	// KeySize is the size of an X25519 private or public key.
	KeySize = 32

	secretHeader = "twinmx-wire-secret-key-v1"
	publicHeader = "twinmx-wire-public-key-v1"

	// maxKeyFile bounds what the loaders read: a key file is under 100
	// bytes, anything much larger is not one.
	maxKeyFile = 4096
)

// ErrBadKey is returned for a key or key file that cannot be used: wrong
// encoding, wrong length, a low-order public key, or a public key that does
// not match the private key.
var ErrBadKey = errors.New("wire: bad key")

// PublicKey is an X25519 public key: a service's identity on the wire.
type PublicKey [KeySize]byte

// String returns the key in standard base64, the form ParsePublicKey reads.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is the zero value (no key).
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// KeyPair is a static X25519 key pair. Private is secret: never log it.
type KeyPair struct {
	Private [KeySize]byte
	Public  PublicKey
}

// GenerateKeyPair reads a new private key from rand (use crypto/rand.Reader)
// and derives its public key.
func GenerateKeyPair(rand io.Reader) (KeyPair, error) {
	var kp KeyPair
	if _, err := io.ReadFull(rand, kp.Private[:]); err != nil {
		return KeyPair{}, fmt.Errorf("generate key pair: %w", err)
	}
	pub, err := publicOf(kp.Private)
	if err != nil {
		return KeyPair{}, err
	}
	kp.Public = pub
	return kp, nil
}

// publicOf derives the public key of an X25519 private key.
func publicOf(priv [KeySize]byte) (PublicKey, error) {
	if priv == [KeySize]byte{} {
		return PublicKey{}, fmt.Errorf("%w: private key is all zero", ErrBadKey)
	}
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return PublicKey(p), nil
}

// check reports an error unless kp.Public is the public key of
// kp.Private.
func (kp *KeyPair) check() error {
	pub, err := publicOf(kp.Private)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(pub[:], kp.Public[:]) != 1 {
		return fmt.Errorf("%w: public key does not match the private key", ErrBadKey)
	}
	return nil
}

// checked memoises the key pairs that most recently passed check, so the
// per-connection config validation costs comparisons instead of scalar
// multiplications: the handshake must not do expensive work for a peer that
// has not sent anything yet (TEST-CATALOG item 75). It holds several pairs,
// not one: a server in a key rotation checks Static and each Previous pair
// on every connection, and a process may hold a client key as well. With a
// single entry those pairs evicted each other, and every connection paid one
// X25519 per key before reading a byte.
var checked struct {
	sync.Mutex
	pairs []KeyPair // at most maxChecked, oldest first
}

// maxChecked bounds the memo: a server key, the older keys of a rotation and
// a client key fit many times over.
const maxChecked = 16

// checkCached is check with the memo.
func (kp *KeyPair) checkCached() error {
	checked.Lock()
	hit := checkedLocked(kp)
	checked.Unlock()
	if hit {
		return nil
	}
	if err := kp.check(); err != nil {
		return err
	}
	checked.Lock()
	defer checked.Unlock()
	if checkedLocked(kp) {
		return nil // another goroutine checked it meanwhile
	}
	if len(checked.pairs) == maxChecked {
		n := copy(checked.pairs, checked.pairs[1:])
		clear(checked.pairs[n:])
		checked.pairs = checked.pairs[:n]
	}
	checked.pairs = append(checked.pairs, *kp)
	return nil
}

// checkedLocked reports whether kp is in the memo. It compares every entry
// in constant time.
// REQUIRES: checked held.
func checkedLocked(kp *KeyPair) bool {
	hit := 0
	for i := range checked.pairs {
		p := &checked.pairs[i]
		hit |= subtle.ConstantTimeCompare(p.Private[:], kp.Private[:]) &
			subtle.ConstantTimeCompare(p.Public[:], kp.Public[:])
	}
	return hit == 1
}

// lowOrderProbe is a fixed clamped scalar. Clamped scalars are multiples of
// the cofactor 8, so X25519 maps every point of small order to zero, which
// curve25519.X25519 reports as an error.
var lowOrderProbe = [KeySize]byte{0: 8, 31: 64}

// ParsePublicKey parses a public key in standard base64 (surrounding space
// is ignored). It refuses keys of the wrong length and the low-order points
// that would make a Diffie-Hellman output predictable.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: public key is not base64: %v", ErrBadKey, err)
	}
	if len(b) != KeySize {
		return PublicKey{}, fmt.Errorf("%w: public key is %d bytes, want %d", ErrBadKey, len(b), KeySize)
	}
	k := PublicKey(b)
	if _, err := curve25519.X25519(lowOrderProbe[:], k[:]); err != nil {
		return PublicKey{}, fmt.Errorf("%w: low-order public key", ErrBadKey)
	}
	return k, nil
}

// WriteKeyFiles writes kp's private key to path (mode 0600) and its public
// key to path+".pub" (mode 0644). It refuses to overwrite either file, and
// refuses a pair whose public key does not match its private key. Both files
// are synced before it returns; on failure it removes what it created.
func WriteKeyFiles(path string, kp KeyPair) (err error) {
	if err := kp.check(); err != nil {
		return err
	}
	pubPath := path + ".pub"
	for _, p := range []string{path, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("write key files: %s already exists", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write key files: %w", err)
		}
	}
	secret := keyFileText(secretHeader, kp.Private[:])
	defer clear(secret)
	if err := createFile(path, secret, 0o600); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := createFile(pubPath, keyFileText(publicHeader, kp.Public[:]), 0o644); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		// Make the new directory entries durable; not all systems allow
		// syncing a directory, so a failure here is not fatal.
		d.Sync()
		d.Close()
	}
	return nil
}

func keyFileText(header string, key []byte) []byte {
	b := make([]byte, 0, len(header)+1+base64.StdEncoding.EncodedLen(len(key))+1)
	b = append(b, header...)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, key)
	return append(b, '\n')
}

// createFile creates path exclusively with the given mode and contents and
// syncs it.
func createFile(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("close key file %s: %w", path, err)
	}
	return nil
}

// LoadKeyPair reads a secret key file written by WriteKeyFiles and derives
// the public key. On unix it refuses a file that group or others may read or
// write. If path+".pub" exists, it must hold the matching public key.
func LoadKeyPair(path string) (KeyPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("load key pair: %w", err)
	}
	defer f.Close()
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		st, err := f.Stat()
		if err != nil {
			return KeyPair{}, fmt.Errorf("load key pair: %w", err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			return KeyPair{}, fmt.Errorf("load key pair: secret key file %s has mode %04o, "+
				"readable or writable by group or others; run chmod 600 %s", path, perm, path)
		}
	}
	raw, err := readKeyFile(f, path, secretHeader)
	if err != nil {
		return KeyPair{}, err
	}
	defer clear(raw)
	var kp KeyPair
	copy(kp.Private[:], raw)
	if kp.Public, err = publicOf(kp.Private); err != nil {
		return KeyPair{}, fmt.Errorf("load key pair %s: %w", path, err)
	}
	pubPath := path + ".pub"
	pub, err := LoadPublicKey(pubPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return KeyPair{}, err
	case pub != kp.Public:
		return KeyPair{}, fmt.Errorf("load key pair: %w: %s does not hold the public key of %s",
			ErrBadKey, pubPath, path)
	}
	return kp, nil
}

// LoadPublicKey reads a public key file written by WriteKeyFiles.
func LoadPublicKey(path string) (PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("load public key: %w", err)
	}
	defer f.Close()
	raw, err := readKeyFile(f, path, publicHeader)
	if err != nil {
		return PublicKey{}, err
	}
	k, err := ParsePublicKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return PublicKey{}, fmt.Errorf("load public key %s: %w", path, err)
	}
	return k, nil
}

// readKeyFile reads a two-line key file and returns the decoded key.
func readKeyFile(r io.Reader, path, header string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	defer clear(data)
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes, not a key file", ErrBadKey, path, maxKeyFile)
	}
	first, rest, _ := bytes.Cut(data, []byte("\n"))
	first = bytes.TrimSpace(first)
	if string(first) != header {
		other := secretHeader
		if header == secretHeader {
			other = publicHeader
		}
		if string(first) == other {
			return nil, fmt.Errorf("%w: %s is a %s file, want %s", ErrBadKey, path, other, header)
		}
		return nil, fmt.Errorf("%w: %s does not start with %q", ErrBadKey, path, header)
	}
	line, tail, _ := bytes.Cut(rest, []byte("\n"))
	if len(bytes.TrimSpace(tail)) != 0 {
		return nil, fmt.Errorf("%w: %s has extra lines after the key", ErrBadKey, path)
	}
	line = bytes.TrimSpace(line)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Decode(key, line)
	if err != nil || n != KeySize {
		clear(key)
		return nil, fmt.Errorf("%w: %s: second line is not a base64 %d-byte key", ErrBadKey, path, KeySize)
	}
	return key[:KeySize], nil
}

// LoadClientKeys loads what every dbd client is configured with: its own
// secret key file and dbd's public key file (pinned).
func LoadClientKeys(keyPath, serverPubPath string) (KeyPair, PublicKey, error) {
	kp, err := LoadKeyPair(keyPath)
	if err != nil {
		return KeyPair{}, PublicKey{}, fmt.Errorf("client key: %w", err)
	}
	sp, err := LoadPublicKey(serverPubPath)
	if err != nil {
		return KeyPair{}, PublicKey{}, fmt.Errorf("dbd public key: %w", err)
	}
	return kp, sp, nil
}
