package digest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Secret is the key of the digest's MACs (X-Twinmx-Digest) and allow
// tokens. Every spamd instance reads the same one from dbd.
type Secret [32]byte

// secretContent is the config row holding the secret: its four columns
// secretCols hold 64 bits each. Columns only rise and merge by maximum, so
// two instances that create the secret at once (one per site, before
// replication) end with the same, mixed, secret on both sites.
var secretContent = []byte("twinmx-digest-secret/1")

var secretCols = [4]string{"k0", "k1", "k2", "k3"}

// errNoSecret means no spamd has created the secret yet.
var errNoSecret = errors.New("digest: no secret in dbd yet")

// readSecret returns the secret dbd holds, or errNoSecret.
func readSecret(ctx context.Context, db DB) (Secret, error) {
	return readKeyRow(ctx, db, secretContent)
}

// ensureSecret returns the secret, creating it first if dbd has none
// (ensureKeyRow).
func ensureSecret(ctx context.Context, db DB) (Secret, error) {
	return ensureKeyRow(ctx, db, secretContent)
}

// SharedKey returns the 256-bit key kept in the config row content the
// way the digest's secret is kept (four columns k0..k3, set only by the
// instance that created the row), creating it if create and dbd has none.
// ok is false when there is none yet and create is false. It reads dbd on
// every call: a key two sites created at once changes once their columns
// merge, and a copy kept forever would then differ from the other
// instances' (configuration confirmations use it for their MAC).
func SharedKey(ctx context.Context, db DB, content []byte, create bool) (key [32]byte, ok bool, err error) {
	if create {
		key, err = ensureKeyRow(ctx, db, content)
	} else {
		key, err = readKeyRow(ctx, db, content)
	}
	if errors.Is(err, errNoSecret) {
		return key, false, nil
	}
	return key, err == nil, err
}

// readKeyRow returns the key config row content holds, or errNoSecret.
func readKeyRow(ctx context.Context, db DB, content []byte) (Secret, error) {
	var s Secret
	row, err := db.FindKey(ctx, model.Config, model.KeyOf(model.Config, content))
	if errors.Is(err, client.ErrNotFound) {
		return s, errNoSecret
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", content, err)
	}
	for i, c := range secretCols {
		v := row.State.Col(c)
		if v == 0 {
			return s, errNoSecret
		}
		binary.BigEndian.PutUint64(s[i*8:], v)
	}
	return s, nil
}

// ensureKeyRow returns the key config row content holds, creating it
// first if dbd has none. Only the instance whose find-or-insert created
// the row sets its columns, so instances that start together at one site
// agree at once (if each set its own, the columns would merge into a third
// key and what was made with the first ones, such as tokens already
// issued, would stop verifying). Instances at two sites that both create
// it before replication still mix (the first-start window in doc.go).
// The key returned is the one read back from dbd, never the one made here.
func ensureKeyRow(ctx context.Context, db DB, content []byte) (Secret, error) {
	s, err := readKeyRow(ctx, db, content)
	if !errors.Is(err, errNoSecret) {
		return s, err
	}
	res, err := db.Batch(ctx, []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Config, Content: content}})
	if err != nil {
		return s, fmt.Errorf("create %s: %w", content, err)
	}
	if !res[0].New {
		// Another instance created the row: wait (bounded) for its
		// columns; if it died before setting them, set ours.
		for range secretWaits {
			if s, err = readKeyRow(ctx, db, content); !errors.Is(err, errNoSecret) {
				return s, err
			}
			select {
			case <-ctx.Done():
				return s, ctx.Err()
			case <-time.After(secretWait):
			}
		}
	}
	var fresh Secret
	if _, err := rand.Read(fresh[:]); err != nil {
		return s, fmt.Errorf("make %s: %w", content, err)
	}
	var reqs []wire.Request
	for i, c := range secretCols {
		// |1: a column must never be 0 (0 reads as "not set").
		v := binary.BigEndian.Uint64(fresh[i*8:]) | 1
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: content}, Name: c, Value: v})
	}
	if _, err := db.Batch(ctx, reqs); err != nil {
		return s, fmt.Errorf("create %s: %w", content, err)
	}
	return readKeyRow(ctx, db, content)
}

// How long ensureSecret waits for another instance's secret columns.
const (
	secretWaits = 50
	secretWait  = 100 * time.Millisecond
)

func (s Secret) mac(parts ...string) []byte {
	h := hmac.New(sha256.New, s[:])
	for _, p := range parts {
		// Length-prefixed, so no two part lists hash alike.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TokenLen is the length of an allow token: 10 bytes of HMAC (80 bits) in
// lower-case base32.
const TokenLen = 16

// Token returns the allow token of (mailbox, sender): the first 80 bits of
// HMAC-SHA256 over both, lower-cased, in base32. Only a holder of the
// secret can make one; the mailbox owner gets it in the digest.
func (s Secret) Token(mailbox, sender string) string {
	m := s.mac("twinmx-allow/1", strings.ToLower(mailbox), strings.ToLower(sender))
	return tokenEncoding.EncodeToString(m[:10])
}

// validToken reports whether tok is the token of (mailbox, sender), in
// constant time.
func (s Secret) validToken(tok, mailbox, sender string) bool {
	return hmac.Equal([]byte(tok), []byte(s.Token(mailbox, sender)))
}
