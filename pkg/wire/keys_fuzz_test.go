package wire

import (
	"bytes"
	"testing"
)

// FuzzReadKeyFile feeds arbitrary key files to the key-file parser: it must
// never panic, and a file it accepts must hold exactly one 32-byte key.
func FuzzReadKeyFile(f *testing.F) {
	kp := KeyPair{Public: PublicKey{1, 2, 3}}
	f.Add(keyFileText(publicHeader, kp.Public[:]))
	f.Add(keyFileText(secretHeader, make([]byte, KeySize)))
	f.Add([]byte(publicHeader + "\n\n"))
	f.Add([]byte(publicHeader + "\r\nAAAA\r\n"))
	f.Add([]byte("not a key file"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, header := range []string{publicHeader, secretHeader} {
			key, err := readKeyFile(bytes.NewReader(data), "f", header)
			if err == nil && len(key) != KeySize {
				t.Fatalf("accepted a key of %d bytes", len(key))
			}
		}
	})
}

// FuzzParsePublicKey: arbitrary text as a public key never panics, and an
// accepted key prints back to text that parses to the same key.
func FuzzParsePublicKey(f *testing.F) {
	f.Add("AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		k2, err := ParsePublicKey(k.String())
		if err != nil || k2 != k {
			t.Fatalf("ParsePublicKey(%q) = %v, but its String %q parses to %v, %v", s, k, k.String(), k2, err)
		}
	})
}
