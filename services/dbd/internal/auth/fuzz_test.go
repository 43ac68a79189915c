package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/wire"
)

// FuzzParseClients feeds arbitrary clients files to the parser. Key paths
// map to keys by hash ("missing*" paths fail, as an absent file would). It
// must never panic; a file it accepts must list only valid roles, and only
// keys named by lines of the file.
func FuzzParseClients(f *testing.F) {
	f.Add([]byte("admin keys/admin.pub\nsmtpd keys/smtpd.pub\n"))
	f.Add([]byte("# comment\n\n  spamd   a.pub  \r\nbackupd /abs/b.pub\n"))
	f.Add([]byte("admin x.pub\nsmtpd x.pub\n"))
	f.Add([]byte("root k.pub\nadmin\nadmin a b\nnotify missing.pub\n"))
	f.Add([]byte(strings.Repeat("mailbox m.pub\n", 100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		named := map[wire.PublicKey]bool{}
		load := func(p string) (wire.PublicKey, error) {
			if strings.HasPrefix(p, "missing") {
				return wire.PublicKey{}, errors.New("no such key file")
			}
			k := wire.PublicKey(sha256.Sum256([]byte(p)))
			named[k] = true
			return k, nil
		}
		c, err := parseClients(bytes.NewReader(data), "clients", load)
		if err != nil {
			return
		}
		for k, r := range c.byKey {
			if _, err := ParseRole(string(r)); err != nil {
				t.Fatalf("accepted role %q", r)
			}
			if !named[k] {
				t.Fatal("accepted a key no line named")
			}
		}
	})
}
