package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestUIDValidityGrowsOnRecreate: a folder deleted and created again, or
// renamed away and replaced by a new folder of the same name, has a
// strictly greater UIDVALIDITY than the old one (RFC 9051 §2.3.1.1,
// TEST-CATALOG 44), in STATUS, SELECT and APPENDUID; and every value is
// the same after imapd restarts over the same dbd. The first version
// hashed the folder id: a new folder got a random value, smaller half the
// time, so a client that cached the old folder could keep its UIDs.
func TestUIDValidityGrowsOnRecreate(t *testing.T) {
	k := start(t)
	c := k.loggedIn(nil)
	validity := func(c *imapclient.Client, name string) uint32 {
		t.Helper()
		st, err := c.Status(name, &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS %s: %v", name, err)
		}
		sd, err := c.Select(name, nil).Wait()
		if err != nil {
			t.Fatalf("SELECT %s: %v", name, err)
		}
		if st.UIDValidity != sd.UIDValidity || sd.UIDValidity == 0 {
			t.Fatalf("%s: STATUS UIDVALIDITY %d, SELECT %d", name, st.UIDValidity, sd.UIDValidity)
		}
		return sd.UIDValidity
	}
	inbox := validity(c, "INBOX")
	if err := c.Create("X", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	prev := validity(c, "X")
	seen := map[string]uint32{"INBOX": inbox}
	for i := range 8 {
		ad, err := appendMail(c, "X", mail(i), nil, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
		if err != nil || ad.UIDValidity != prev {
			t.Fatalf("APPEND %d: %+v, %v (UIDVALIDITY %d)", i, ad, err, prev)
		}
		if err := c.Unselect().Wait(); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := c.Delete("X").Wait(); err != nil {
				t.Fatal(err)
			}
		} else {
			old := fmt.Sprintf("Old%d", i)
			if err := c.Rename("X", old, nil).Wait(); err != nil {
				t.Fatal(err)
			}
			// RENAME keeps the folder's UIDs, so its UIDVALIDITY too.
			if v := validity(c, old); v != prev {
				t.Fatalf("renamed folder: UIDVALIDITY %d, was %d", v, prev)
			}
			seen[old] = prev
		}
		if err := c.Create("X", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		v := validity(c, "X")
		if v <= prev {
			t.Fatalf("round %d: new X has UIDVALIDITY %d, old X had %d", i, v, prev)
		}
		sd, err := c.Select("X", nil).Wait()
		if err != nil || sd.NumMessages != 0 {
			t.Fatalf("new X: %+v, %v", sd, err)
		}
		prev = v
	}
	seen["X"] = prev
	// A restarted imapd (the first one stopped) shows the same values.
	addr, _, _ := k.runIMAPD(nil)
	c.Logout().Wait()
	k.stopFirst()
	c2, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Login(login, password).Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range seen {
		if v := validity(c2, name); v != want {
			t.Fatalf("after an imapd restart %s has UIDVALIDITY %d, was %d", name, v, want)
		}
	}
}
