package test

import (
	"strings"
	"testing"
)

// TestLoginCachePasswordChange: pop3d remembers a password argon2id
// confirmed (--login-cache, on by default), and a password changed with
// dbctl takes effect at once all the same: the old password, just
// confirmed and cached, is refused at the next login, and the new one is
// accepted. With the cache off the same holds. The cache's hits are
// counted (twinmx_pop3d_logins_cached_total).
func TestLoginCachePasswordChange(t *testing.T) {
	s := newSite(t, "A", "")
	s.user("carol", "first password", "carol@twinmx.test")
	for _, flags := range [][]string{nil, {"--login-cache", "0"}} {
		p := s.startPOP3D("", flags...)
		login := func(pass string, want bool) {
			t.Helper()
			c, err := dialPOP(p.addr, "carol", pass)
			if (err == nil) != want {
				t.Fatalf("pop3d %v: login with %q: %v, want success %v", flags, pass, err, want)
			}
			if err == nil {
				if err := c.quit(); err != nil {
					t.Fatal(err)
				}
			}
		}
		login("first password", true)
		login("first password", true) // from the cache, when it is on
		login("wrong password", false)
		s.Dbctl(strings.NewReader("second password\n"), "user", "passwd", "carol")
		login("first password", false)
		login("second password", true)
		login("second password", true)
		// The cache took the second login of each password.
		cached := 2.0
		if flags != nil {
			cached = 0
		}
		waitMetric(t, p.metrics, "twinmx_pop3d_logins_cached_total", cached)
		s.Dbctl(strings.NewReader("first password\n"), "user", "passwd", "carol")
		p.Kill()
	}
}
