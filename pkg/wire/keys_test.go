package wire

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// lowOrderPoints are the seven classic X25519 public keys of small order
// (TEST-CATALOG item 68): with any private key they give a predictable
// shared secret, so every layer must refuse them.
var lowOrderPoints = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func lowOrderKey(t testing.TB, i int) PublicKey {
	t.Helper()
	b, err := hex.DecodeString(lowOrderPoints[i])
	if err != nil || len(b) != KeySize {
		t.Fatalf("bad low-order point %d", i)
	}
	return PublicKey(b)
}

func mustKeyPair(t testing.TB) KeyPair {
	t.Helper()
	kp, err := GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	return kp
}

func TestGenerateKeyPair(t *testing.T) {
	a, b := mustKeyPair(t), mustKeyPair(t)
	if a.Private == b.Private || a.Public == b.Public {
		t.Fatal("two generated key pairs are equal")
	}
	if err := a.check(); err != nil {
		t.Fatalf("generated pair does not check: %v", err)
	}
	if _, err := GenerateKeyPair(strings.NewReader("short")); err == nil {
		t.Fatal("GenerateKeyPair with a short reader succeeded")
	}
	if _, err := GenerateKeyPair(strings.NewReader(string(make([]byte, 32)))); !errors.Is(err, ErrBadKey) {
		t.Fatalf("GenerateKeyPair(zero) error = %v, want ErrBadKey", err)
	}
}

func TestParsePublicKey(t *testing.T) {
	kp := mustKeyPair(t)
	tests := []struct {
		name    string
		in      string
		want    PublicKey
		wantErr error
	}{
		{"round trip", kp.Public.String(), kp.Public, nil},
		{"surrounding space", "  " + kp.Public.String() + "\n", kp.Public, nil},
		{"not base64", "!!!!", PublicKey{}, ErrBadKey},
		{"url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(strings.Repeat("+/", 22)), PublicKey{}, ErrBadKey},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 31)), PublicKey{}, ErrBadKey},
		{"long", base64.StdEncoding.EncodeToString(make([]byte, 33)), PublicKey{}, ErrBadKey},
		{"empty", "", PublicKey{}, ErrBadKey},
	}
	for i := range lowOrderPoints {
		k := lowOrderKey(t, i)
		tests = append(tests, struct {
			name    string
			in      string
			want    PublicKey
			wantErr error
		}{"low order " + lowOrderPoints[i][:8], k.String(), PublicKey{}, ErrBadKey})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePublicKey(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParsePublicKey(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("ParsePublicKey(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpd.key")
	kp := mustKeyPair(t)
	if err := WriteKeyFiles(path, kp); err != nil {
		t.Fatalf("WriteKeyFiles: %v", err)
	}
	got, err := LoadKeyPair(path)
	if err != nil {
		t.Fatalf("LoadKeyPair: %v", err)
	}
	if got != kp {
		t.Fatal("LoadKeyPair returned another pair")
	}
	pub, err := LoadPublicKey(path + ".pub")
	if err != nil {
		t.Fatalf("LoadPublicKey: %v", err)
	}
	if pub != kp.Public {
		t.Fatalf("LoadPublicKey = %v, want %v", pub, kp.Public)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			// The umask may only remove bits.
			if perm := st.Mode().Perm(); perm&^want != 0 || perm&0o600 != 0o600 {
				t.Errorf("%s has mode %04o, want %04o", p, perm, want)
			}
		}
	}
	text, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if want := "twinmx-wire-public-key-v1\n" + kp.Public.String() + "\n"; string(text) != want {
		t.Fatalf("public key file = %q, want %q", text, want)
	}
}

func TestWriteKeyFilesRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	kp := mustKeyPair(t)
	if err := WriteKeyFiles(path, kp); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFiles(path, mustKeyPair(t)); err == nil {
		t.Fatal("WriteKeyFiles overwrote an existing key")
	}
	if got, err := LoadKeyPair(path); err != nil || got != kp {
		t.Fatalf("existing key changed: %v", err)
	}

	// Only the .pub exists: still refused, and no secret file is left.
	path2 := filepath.Join(dir, "k2")
	if err := os.WriteFile(path2+".pub", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFiles(path2, kp); err == nil {
		t.Fatal("WriteKeyFiles overwrote an existing .pub")
	}
	if _, err := os.Stat(path2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("secret file left behind: %v", err)
	}

	bad := kp
	bad.Public[0] ^= 1
	if err := WriteKeyFiles(filepath.Join(dir, "k3"), bad); !errors.Is(err, ErrBadKey) {
		t.Fatalf("WriteKeyFiles(mismatched pair) error = %v, want ErrBadKey", err)
	}
}

func TestLoadKeyPairRefusesOpenMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix modes")
	}
	path := filepath.Join(t.TempDir(), "k")
	if err := WriteKeyFiles(path, mustKeyPair(t)); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyPair(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("LoadKeyPair with mode %04o: error = %v, want a mode complaint", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyPair(path); err != nil {
		t.Errorf("LoadKeyPair with mode 0400: %v", err)
	}
}

func TestLoadKeyFilesRejectBadContent(t *testing.T) {
	dir := t.TempDir()
	kp, other := mustKeyPair(t), mustKeyPair(t)
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := func(k [32]byte) string {
		return "twinmx-wire-secret-key-v1\n" + base64.StdEncoding.EncodeToString(k[:]) + "\n"
	}
	public := func(k PublicKey) string { return "twinmx-wire-public-key-v1\n" + k.String() + "\n" }

	// Mismatching .pub next to the secret.
	p := write("mismatch", secret(kp.Private), 0o600)
	write("mismatch.pub", public(other.Public), 0o644)
	if _, err := LoadKeyPair(p); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadKeyPair with a foreign .pub: error = %v, want ErrBadKey", err)
	}
	// No .pub at all is fine: the public key is derived.
	p = write("alone", secret(kp.Private), 0o600)
	if got, err := LoadKeyPair(p); err != nil || got != kp {
		t.Errorf("LoadKeyPair without .pub = %v, want the pair", err)
	}
	// CRLF line ends are tolerated.
	p = write("crlf", strings.ReplaceAll(secret(kp.Private), "\n", "\r\n"), 0o600)
	if got, err := LoadKeyPair(p); err != nil || got != kp {
		t.Errorf("LoadKeyPair with CRLF: %v", err)
	}

	bad := map[string]string{
		"public as secret": public(kp.Public),
		"bare base64":      base64.StdEncoding.EncodeToString(kp.Private[:]) + "\n",
		"short key":        "twinmx-wire-secret-key-v1\nAAAA\n",
		"long line":        "twinmx-wire-secret-key-v1\n" + strings.Repeat("A", 200) + "\n",
		"extra line":       secret(kp.Private) + "more\n",
		"zero key":         secret([32]byte{}),
		"huge":             strings.Repeat("x", maxKeyFile+10),
		"empty":            "",
	}
	for name, text := range bad {
		p := write("bad-"+strings.ReplaceAll(name, " ", "-"), text, 0o600)
		if _, err := LoadKeyPair(p); !errors.Is(err, ErrBadKey) {
			t.Errorf("LoadKeyPair(%s) error = %v, want ErrBadKey", name, err)
		}
	}
	if _, err := LoadPublicKey(write("secret-as-public", secret(kp.Private), 0o600)); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadPublicKey(secret file) error = %v, want ErrBadKey", err)
	}
	if _, err := LoadPublicKey(write("low-order.pub", public(lowOrderKey(t, 2)), 0o644)); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadPublicKey(low-order) error = %v, want ErrBadKey", err)
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPublicKey(missing) error = %v, want ErrNotExist", err)
	}
}

func TestCheckCached(t *testing.T) {
	kp := mustKeyPair(t)
	for range 2 { // the second call hits the memo
		if err := kp.checkCached(); err != nil {
			t.Fatalf("checkCached(valid) = %v", err)
		}
	}
	bad := kp
	bad.Public[5] ^= 1
	if err := bad.checkCached(); !errors.Is(err, ErrBadKey) {
		t.Fatalf("checkCached(mismatched) = %v, want ErrBadKey", err)
	}
	bad = kp
	bad.Private[5] ^= 1
	if err := bad.checkCached(); !errors.Is(err, ErrBadKey) {
		t.Fatalf("checkCached(other private) = %v, want ErrBadKey", err)
	}
	if err := kp.checkCached(); err != nil {
		t.Fatalf("checkCached(valid) after failures = %v", err)
	}
}

// TestCheckCachedSeveralKeys: a server in a key rotation validates its
// Static and each Previous pair on every connection (ServerConfig.params),
// and a process may hold a client key too. Every one of them must hit the
// memo; with a single-entry memo they evicted each other, and every
// connection paid one X25519 per key before its peer had sent a byte.
func TestCheckCachedSeveralKeys(t *testing.T) {
	keys := []KeyPair{mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)}
	check := func() {
		for i := range keys {
			if err := keys[i].checkCached(); err != nil {
				t.Fatalf("checkCached(key %d) = %v", i, err)
			}
		}
	}
	check()
	// A memo hit allocates nothing; a miss allocates X25519's output.
	if n := testing.AllocsPerRun(10, check); n != 0 {
		t.Fatalf("checkCached of %d alternating keys: %v allocations per round, want 0 (memo misses)", len(keys), n)
	}
}
