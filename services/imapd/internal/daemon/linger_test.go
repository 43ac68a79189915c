package daemon

import (
	"io"
	"strings"
	"testing"
)

// TestLogoutEndsWithFIN: a session that ends while the client's input is
// still unread (commands pipelined after LOGOUT, or the tail of a deflate
// flush written in pieces) ends with FIN, not a reset. A reset destroys
// what the server had not sent yet, and on a slow link that can be the
// BYE and the tagged OK; on loopback it shows as ECONNRESET after them.
func TestLogoutEndsWithFIN(t *testing.T) {
	k := start(t)
	for i := 0; i < 5; i++ {
		r := k.rawLogin()
		r.send("z LOGOUT\r\n" + strings.Repeat("x NOOP\r\n", 8<<10))
		rest, err := io.ReadAll(r.br)
		got := string(rest)
		if !strings.Contains(got, "* BYE") || !strings.Contains(got, "z OK") {
			t.Fatalf("session %d: after LOGOUT read %q; want the BYE and z OK", i, got)
		}
		if err != nil {
			t.Fatalf("session %d: the session ended with %v, want a clean end (FIN)", i, err)
		}
	}
}
