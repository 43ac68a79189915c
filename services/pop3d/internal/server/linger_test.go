package server

import (
	"io"
	"strings"
	"testing"
)

// TestQuitEndsWithFIN: a session that ends while the client's input is
// unread (commands pipelined after QUIT) ends with FIN (and, over TLS,
// close_notify), not a reset, which would destroy what the client has not
// been sent yet; on loopback it shows as ECONNRESET after the +OK.
func TestQuitEndsWithFIN(t *testing.T) {
	e := startEnv(t, Config{})
	// 32 KiB: more than pop3d reads at once (4 KiB), less than its drain
	// takes (64 KiB), so some is unread when the session ends and none is
	// left when the socket closes.
	junk := strings.Repeat("NOOP\r\n", 32<<10/6)
	for name, dial := range map[string]func(*testing.T, string) *popClient{"plain": dialPOP, "tls": dialPOPS} {
		addr := e.addr
		if name == "tls" {
			addr = e.tlsAddr
		}
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			c.send("QUIT\r\n" + junk[:len(junk)-2])
			rest, err := io.ReadAll(c.r)
			if !strings.HasPrefix(string(rest), "+OK") {
				t.Fatalf("after QUIT read %q; want +OK first", rest)
			}
			if err != nil {
				t.Fatalf("the session ended with %v, want a clean end", err)
			}
		})
	}
}
