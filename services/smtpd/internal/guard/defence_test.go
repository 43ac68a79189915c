package guard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEarlyTalker(t *testing.T) {
	srv := startServer(t, Config{GreetPause: 300 * time.Millisecond})
	c := dial(t, srv.addr)
	c.send("EHLO early.test\r\n")
	c.expect("554 5.5.1 mx.test Error: client spoke before the greeting")
	c.expectClosed()
	if srv.l.pass.passed(netip.MustParseAddr("127.0.0.1")) {
		t.Error("early talker was added to the pass cache")
	}

	// A client that waits passes and is remembered.
	c = dial(t, srv.addr)
	c.expect("220 ")
	c.cmd("EHLO patient.test", "250")
	if !srv.l.pass.passed(netip.MustParseAddr("127.0.0.1")) {
		t.Error("patient client not in the pass cache")
	}
	var early int
	for _, gc := range srv.be.Conns() {
		if gc.EarlyTalker() {
			early++
		}
	}
	if early != 0 {
		t.Errorf("early talkers among sessions = %d, want 0 (the early one never got one)", early)
	}
}

func TestPassCacheBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPassCache(time.Hour, 3, func() time.Time { return now })
	ips := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4"),
	}
	for _, ip := range ips {
		p.add(ip)
		now = now.Add(time.Second)
	}
	if p.passed(ips[0]) {
		t.Error("oldest entry not evicted")
	}
	for _, ip := range ips[1:] {
		if !p.passed(ip) {
			t.Errorf("%v evicted, want kept", ip)
		}
	}
	now = now.Add(2 * time.Hour)
	if p.passed(ips[3]) {
		t.Error("entry alive after its TTL")
	}
	p.add(ips[0])
	if len(p.until) != 1 || len(p.queue) != 1 {
		t.Errorf("after expiry: %d entries, queue %d; want 1, 1", len(p.until), len(p.queue))
	}
}

func TestPerIPLimit(t *testing.T) {
	srv := startServer(t, Config{MaxConnsPerIP: 20})
	var cs []*client
	for range 20 {
		c := dial(t, srv.addr)
		c.expect("220 ")
		cs = append(cs, c)
	}
	c := dial(t, srv.addr)
	c.expect("421 4.7.0 mx.test Too many connections from your address")
	c.expectClosed()

	// Closing one frees its slot exactly once.
	cs[0].cmd("QUIT", "221 ")
	for i := 0; srv.l.Active() != 19; i++ {
		if i > 500 {
			t.Fatalf("active = %d, want 19", srv.l.Active())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c = dial(t, srv.addr)
	c.expect("220 ")
}

// TestConnRateLimit opens connections from one address faster than the
// rate allows (catalog item 22: 1000 connects a minute): the ones over it
// get 421 4.7.0 and are closed at once, sessions already open carry on,
// and once the window has passed the client is admitted again.
func TestConnRateLimit(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var counted atomic.Int64
	srv := startServer(t, Config{MaxConnRate: 50, ConnRateExempt: []netip.Prefix{}, Clock: clock,
		OnRefuse: func(reason string) {
			if reason == "conn-rate" {
				counted.Add(1)
			}
		}})
	open := dial(t, srv.addr)
	open.expect("220 ")
	open.cmd("EHLO client.test", "250")
	ok, refused := 1, 0
	for range 1000 {
		c := dial(t, srv.addr)
		line := c.expect("")
		switch {
		case strings.HasPrefix(line, "220 "):
			ok++
			c.cmd("QUIT", "221 ")
		case strings.HasPrefix(line, "421 4.7.0 mx.test Too many connections from your address in a short time"):
			refused++
			c.expectClosed()
		default:
			t.Fatalf("connection %d: %q", ok+refused, line)
		}
	}
	if ok != 50 || refused != 951 {
		t.Fatalf("%d admitted, %d refused; want 50 (the rate) and the other 951", ok, refused)
	}
	if n := counted.Load(); n != 951 {
		t.Errorf("OnRefuse(conn-rate) called %d times, want 951 (the metric)", n)
	}
	// The session opened before the flood is unaffected.
	open.cmd("NOOP", "250 ")
	if n := srv.l.Active(); n > 1 {
		t.Logf("active %d (sessions still closing)", n)
	}
	mu.Lock()
	now = now.Add(DefaultConnRateWindow)
	mu.Unlock()
	c := dial(t, srv.addr)
	c.expect("220 ")
	c.cmd("QUIT", "221 ")

	// Loopback is exempt by default: the same flood is admitted.
	srv = startServer(t, Config{MaxConnRate: 5})
	for range 20 {
		c := dial(t, srv.addr)
		c.expect("220 ")
		c.cmd("QUIT", "221 ")
	}
}

func TestTotalLimit(t *testing.T) {
	srv := startServer(t, Config{MaxConns: 2})
	for range 2 {
		dial(t, srv.addr).expect("220 ")
	}
	c := dial(t, srv.addr)
	c.expect("421 4.3.2 mx.test Too busy, try later")
	c.expectClosed()
}

// selfSigned returns a TLS config with a fresh self-signed certificate.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		DNSNames:     []string{"mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestSTARTTLS(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		srv := startServerReading(t, Config{TLS: selfSigned(t)}, direct)
		c := dial(t, srv.addr)
		c.expect("220 ")
		ehlo := c.cmd("EHLO client.test", "250")
		if !strings.Contains(ehlo, "250-STARTTLS\r\n") && !strings.Contains(ehlo, "250 STARTTLS\r\n") {
			t.Errorf("EHLO before TLS lacks STARTTLS:\n%s", ehlo)
		}
		if strings.Contains(ehlo, "CHUNKING") {
			t.Errorf("EHLO offers CHUNKING:\n%s", ehlo)
		}
		c.cmd("STARTTLS now", "501 ")
		// A transaction opened before TLS must not survive it.
		c.cmd("MAIL FROM:<before@s.test>", "250 ")
		// CVE-2011-0411: the pipelined MAIL must be discarded.
		c.send("STARTTLS\r\nMAIL FROM:<injected@s.test>\r\n")
		c.expect("220 2.0.0")
		c.tlsUpgrade()
		// RFC 3207 §4.2: the client must greet again before a transaction.
		c.cmd("MAIL FROM:<no-ehlo@s.test>", "503 5.5.1")
		ehlo = c.cmd("EHLO client.test", "250")
		if strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "CHUNKING") {
			t.Errorf("EHLO after TLS:\n%s", ehlo)
		}
		c.cmd("RCPT TO:<r@mx.test>", "503 ") // no MAIL in this (TLS) session
		c.startTx("after@s.test")
		c.send("hello\r\n.\r\n")
		c.expect("250 ")
		c.cmd("STARTTLS", "502 ") // go-smtp: not again
		c.cmd("QUIT", "221 ")
		waitClosed(t, srv)

		if got := strings.Join(srv.be.Mails(), ","); got != "before@s.test,after@s.test" {
			t.Errorf("mails = %s, want before@s.test,after@s.test", got)
		}
		gc := srv.be.Conns()[0]
		if st, ok := gc.TLS(); !ok || !st.HandshakeComplete {
			t.Errorf("TLS() = %v, %v; want a completed handshake", st.HandshakeComplete, ok)
		}
		recs, err := ParseCapture(gc.Capture())
		if err != nil {
			t.Fatal(err)
		}
		var sawTLS bool
		for _, r := range recs {
			if r.Dir == DirTLS {
				sawTLS = true
			}
			if r.Dir == DirServer && strings.Contains(string(r.Data), "Session reset") {
				t.Errorf("the reply to the injected RSET reached the client: %q", r.Data)
			}
		}
		if !sawTLS {
			t.Error("capture has no TLS record")
		}
	})
}

func TestSTARTTLSHandshakeFailure(t *testing.T) {
	srv := startServer(t, Config{TLS: selfSigned(t), TLSHandshakeTimeout: 200 * time.Millisecond})
	c := greeted(t, srv.addr)
	c.cmd("STARTTLS", "220 ")
	c.send("this is not a TLS client hello\r\n")
	c.expectClosed()
}

// TestCapture: the capture holds exactly the bytes on the wire, and counts
// what it did not keep.
func TestCapture(t *testing.T) {
	bothReaders(t, func(t *testing.T, direct bool) {
		for _, max := range []int{DefaultCaptureMax, 300} {
			srv := startServerReading(t, Config{CaptureMax: max}, direct)
			c := dial(t, srv.addr)
			var sent, got strings.Builder
			got.WriteString(c.expect("220 "))
			for _, line := range []string{"EHLO client.test", "MAIL FROM:<a@s.test>", "RCPT TO:<r@mx.test>", "DATA"} {
				sent.WriteString(line + "\r\n")
				got.WriteString(c.cmd(line, ""))
			}
			body := strings.Repeat("body line\r\n", 100) + ".\r\n"
			c.send(body)
			sent.WriteString(body)
			got.WriteString(c.expect("250 "))
			sent.WriteString("QUIT\r\n")
			got.WriteString(c.cmd("QUIT", "221 "))
			waitClosed(t, srv)

			recs, err := ParseCapture(srv.be.Conns()[0].Capture())
			if err != nil {
				t.Fatal(err)
			}
			var cKept, sKept strings.Builder
			var cTotal, sTotal, elided int64
			for i, r := range recs {
				if i > 0 && r.At < recs[i-1].At {
					t.Errorf("record %d goes back in time", i)
				}
				elided += r.Elided
				switch r.Dir {
				case DirClient:
					cKept.Write(r.Data)
					cTotal += int64(len(r.Data)) + r.Elided
				case DirServer:
					sKept.Write(r.Data)
					sTotal += int64(len(r.Data)) + r.Elided
				}
			}
			if cTotal != int64(sent.Len()) || sTotal != int64(got.Len()) {
				t.Errorf("max %d: totals client %d server %d, want %d %d", max, cTotal, sTotal, sent.Len(), got.Len())
			}
			if max == DefaultCaptureMax {
				if cKept.String() != sent.String() || sKept.String() != got.String() || elided != 0 {
					t.Errorf("capture differs from the wire")
				}
			} else if elided == 0 || !strings.HasPrefix(sent.String(), cKept.String()[:10]) {
				t.Errorf("max %d: elided %d, want > 0", max, elided)
			}
		}
	})
}

var _ net.Conn = (*Conn)(nil)

// TestGuardRepliesCount: the guard's own error replies (501 to STARTTLS
// with an argument, 503 to a transaction before the greeting after TLS)
// count against MaxErrors like go-smtp's. Before, they bypassed the count
// and the tarpit: a client could collect MaxCommands of them.
func TestGuardRepliesCount(t *testing.T) {
	t.Run("STARTTLS argument", func(t *testing.T) {
		srv := startServer(t, Config{TLS: selfSigned(t), MaxErrors: 2, SoftErrors: -1})
		c := greeted(t, srv.addr)
		c.cmd("STARTTLS now", "501 ")
		c.cmd("STARTTLS now", "501 ")
		c.send("STARTTLS now\r\nNOOP\r\n")
		c.expect("501 ")
		c.expect("421 4.7.0")
		c.expectClosed()
	})
	t.Run("no greeting after TLS", func(t *testing.T) {
		srv := startServer(t, Config{TLS: selfSigned(t), MaxErrors: 2, SoftErrors: -1})
		c := greeted(t, srv.addr)
		c.cmd("STARTTLS", "220 ")
		c.tlsUpgrade()
		c.cmd("MAIL FROM:<a@s.test>", "503 ")
		c.cmd("MAIL FROM:<a@s.test>", "503 ")
		c.send("MAIL FROM:<a@s.test>\r\nNOOP\r\n")
		c.expect("503 ")
		c.expect("421 4.7.0")
		c.expectClosed()
	})
	t.Run("tarpit", func(t *testing.T) {
		const delay = 300 * time.Millisecond
		srv := startServer(t, Config{TLS: selfSigned(t), SoftErrors: 1, ErrorDelay: delay})
		c := greeted(t, srv.addr)
		c.cmd("STARTTLS now", "501 ")
		start := time.Now()
		c.cmd("STARTTLS now", "501 ")
		if took := time.Since(start); took < delay {
			t.Errorf("an error reply past the soft limit answered after %v, want at least %v", took, delay)
		}
	})
}
