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
// must never panic; a file it accepts must list only valid roles, only
// keys named by lines of the file, and not-after times only if a line has one.
func FuzzParseClients(f *testing.F) {
	f.Add([]byte("admin keys/admin.pub\nsmtpd keys/smtpd.pub\n"))
	f.Add([]byte("# comment\n\n  spamd   a.pub  \r\nbackupd /abs/b.pub\n"))
	f.Add([]byte("admin x.pub\nsmtpd x.pub\n"))
	f.Add([]byte("root k.pub\nadmin\nadmin a b\nnotify missing.pub\n"))
	f.Add([]byte(strings.Repeat("mailbox m.pub\n", 100)))
	f.Add([]byte("spamd dev.pub not-after=2027-03-31\nadmin a.pub not-after=2027-03-31T18:00:00+02:00\n"))
	f.Add([]byte("spamd dev.pub not-after=2027-02-30\nspamd dev.pub not-after=\nsmtpd s.pub until=2027-01-01\n"))
	f.Add([]byte("spamd dev.pub not-after=2027-03-31\nspamd dev.pub not-after=2027-04-01\nspamd dev.pub\n"))
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
		for k, cl := range c.byKey {
			if _, err := ParseRole(string(cl.Role)); err != nil {
				t.Fatalf("accepted role %q", cl.Role)
			}
			if !cl.NotAfter.IsZero() && !bytes.Contains(data, []byte("not-after=")) {
				t.Fatal("a not-after without a not-after field")
			}
			if !named[k] {
				t.Fatal("accepted a key no line named")
			}
		}
	})
}
