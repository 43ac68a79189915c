package guard

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestGoSMTPClient drives the guarded server with go-smtp's own client:
// STARTTLS, EHLO extensions as the client parses them, dot-stuffing.
func TestGoSMTPClient(t *testing.T) {
	srv := startServer(t, Config{TLS: selfSigned(t)})
	c, err := smtp.DialStartTLS(srv.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial with STARTTLS: %v", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("CHUNKING"); ok {
		t.Error("CHUNKING offered after TLS")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered after TLS")
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("client not on TLS")
	}
	msg := "Subject: hi\r\n\r\n.one dot\r\n..two dots\r\n.\r\n" + strings.Repeat("y", 100000) + "\r\n"
	if err := c.SendMail("a@s.test", []string{"r@mx.test"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("quit: %v", err)
	}
	d := srv.be.Datas()
	if len(d) != 1 || string(d[0].body) != msg {
		t.Fatalf("Data calls = %d, body differs from the sent message", len(d))
	}
}
