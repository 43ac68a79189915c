package daemon

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestStartTLSInjection (TEST-CATALOG 13; CVE-2011-0411): a LOGIN sent in
// the same plaintext write as STARTTLS must never run, neither as
// plaintext nor after the handshake. go-imap feeds the buffered bytes into
// the TLS handshake, which then fails: the connection ends and nothing was
// logged in. A remote client is used, so the LOGIN would count as a
// TLS-protected one if it ran after the handshake.
func TestStartTLSInjection(t *testing.T) {
	k := startWith(t, func(c *Config) { c.PlaintextFrom = func(net.Addr) bool { return false } })
	conn, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute)) // a hang guard only
	br := bufio.NewReader(conn)
	if g, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q, %v", g, err)
	}
	inject := fmt.Sprintf("a STARTTLS\r\nb LOGIN %s %q\r\n", login, password)
	if _, err := conn.Write([]byte(inject)); err != nil {
		t.Fatal(err)
	}
	l, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS answered %q, %v", l, err)
	}
	if br.Buffered() > 0 {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("plaintext after the STARTTLS answer: %q", rest)
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		// A server that discards the buffered plaintext: the LOGIN must
		// have been dropped, so the first answer is to our NOOP.
		tc.Write([]byte("c NOOP\r\n"))
		l, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "c OK") {
			t.Errorf("first line inside TLS = %q, %v; want the answer to NOOP, nothing for the injected LOGIN", l, err)
		}
	}
	// Nothing was logged in, and imapd serves on.
	if got := loginsOK(t, k); got != 0 {
		t.Errorf("logins ok = %v after an injected LOGIN, want 0", got)
	}
	r := k.raw()
	r.send("x CAPABILITY\r\n")
	r.until("x OK")
}

// loginsOK is twinmx_imapd_logins_total{result="ok"}, 0 before any.
func loginsOK(t *testing.T, k *kit) float64 {
	t.Helper()
	mfs, err := k.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "twinmx_imapd_logins_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == "ok" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
