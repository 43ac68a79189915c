// Package passwd hashes and checks account passwords with argon2id (RFC
// 9106), stored as PHC strings ("$argon2id$v=19$m=65536,t=2,p=1$salt$hash")
// in the account's password row (SPEC §8; see model.PasswordContent).
//
// The parameters are read back from the stored string, so they can be raised
// later without invalidating old hashes. Check compares in constant time and
// refuses parameters outside sane bounds, so a corrupted or hostile stored
// string cannot make a login take gigabytes or minutes.
package passwd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// Default follows RFC 9106 §4's second recommendation (64 MiB, 3 passes)
// reduced to 2 passes: one login costs about 50 ms on one core, which a
// mail server with per-IP login limits can afford.
var Default = Params{MemoryKiB: 64 << 10, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
	// Bounds a stored hash's parameters must stay within to be checked.
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 16
)

// ErrMalformed is returned by Check for a stored string that is not an
// argon2id PHC string this package can check.
var ErrMalformed = errors.New("passwd: malformed hash")

// Hash returns the PHC string of password with a fresh random salt.
func Hash(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// Check reports whether password matches the PHC string stored. It returns
// an error (wrapping ErrMalformed) only when stored cannot be checked.
func Check(password, stored string) (bool, error) {
	f := strings.Split(stored, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return false, fmt.Errorf("%w: not an argon2id PHC string", ErrMalformed)
	}
	var v int
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("%w: version %q", ErrMalformed, f[2])
	}
	var p Params
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || n != 3 {
		return false, fmt.Errorf("%w: parameters %q", ErrMalformed, f[3])
	}
	if p.MemoryKiB < 8 || p.MemoryKiB > maxMemoryKiB || p.Time < 1 || p.Time > maxTime || p.Threads < 1 {
		return false, fmt.Errorf("%w: parameters %q out of bounds", ErrMalformed, f[3])
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(f[4])
	if err != nil || len(salt) < 8 {
		return false, fmt.Errorf("%w: salt", ErrMalformed)
	}
	want, err := enc.DecodeString(f[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, fmt.Errorf("%w: key", ErrMalformed)
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
