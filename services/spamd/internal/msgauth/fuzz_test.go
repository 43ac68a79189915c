package msgauth

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// nxResolver answers every question with "no such name", or, when txt is
// set, every TXT question with txt (so fuzzed bytes also reach the SPF,
// DKIM-key and DMARC record parsers).
type nxResolver struct{ txt string }

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r nxResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if r.txt != "" {
		return []string{r.txt}, nil
	}
	return nil, notFound(name)
}

func (nxResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	return nil, notFound(host)
}

func (nxResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}

func (nxResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}

// FuzzCheck feeds arbitrary mail (and envelope sender, and TXT answer) to
// Check. It must not panic, and with a DNS that knows nothing no check can
// pass and DMARC can never ask for a reject.
func FuzzCheck(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"), "a@example.com", "")
	f.Add([]byte("From: a@example.com\nDKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=; b=\n\nx\n"), "", "")
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=s; h=from:from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\nFrom: x@example.com\r\n\r\n"), "b@example.com", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add([]byte("From: a@example.com\r\n\r\n"), "a@example.com", "v=spf1 include:%{l}.%{d}._spf.example.com redirect=%{o} -all")
	f.Add([]byte("From: a@example.com\r\n\r\n"), "a@example.com", "v=DMARC1; p=reject; sp=quarantine; pct=abc")
	f.Add([]byte(""), "", "")
	f.Add([]byte("\r\n\r\n"), "<>", "")
	f.Add([]byte("no colon\r\nFrom: a@example.com\r\nFrom : b@example.org\r\n\r\n"), "a@example.com", "v=DMARC1; p=reject")
	f.Add([]byte("From: j@bücher.example\r\n\r\n"), "j@Bücher。example", "v=spf1 a:%{d} -all")
	f.Fuzz(func(t *testing.T, raw []byte, mailFrom, txt string) {
		e := signal.Envelope{ClientIP: "192.0.2.1", Helo: "mta.example.net", From: mailFrom}
		done := make(chan signal.Auth, 1)
		go func() { done <- New(nxResolver{txt: txt}, Config{MaxLookups: 20}).Check(context.Background(), e, raw) }()
		var a signal.Auth
		select {
		case a = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Check(%q, %q, %q) hangs", raw, mailFrom, txt)
		}
		for _, r := range []signal.AuthResult{a.SPF, a.DKIM, a.DMARC} {
			if r > signal.PermError {
				t.Fatalf("Check: result %d out of range: %+v", r, a)
			}
		}
		if txt == "" {
			if a.SPF != signal.None || a.DKIM == signal.Pass || a.DMARC == signal.Pass || a.DMARC == signal.Fail || a.DMARCReject {
				t.Fatalf("Check with empty DNS = %+v, want no spf, no dkim pass, no dmarc verdict", a)
			}
		}
	})
}

// FuzzFromHeaderDomain feeds arbitrary mail to the From reader DMARC
// relies on: no panic, a domain only with result None, and a domain that
// is a normalized multi-label name.
func FuzzFromHeaderDomain(f *testing.F) {
	f.Add([]byte("From: Alice <a@Example.COM.>\r\n\r\n"))
	f.Add([]byte("no colon\r\nFrom : a@a.example\r\n\r\n"))
	f.Add([]byte(" fold\r\nFROM:\ta@a.example,\r\n b@A.example\r\nfrom: c@c.example\n\nbody"))
	f.Add([]byte("From: =?utf-8?q?J=C3=B6rg?= <j@bücher.example>\r\n\r\n"))
	f.Add([]byte("From: undisclosed:;\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg := canonicalLines(raw)
		for _, v := range headerFields(msg, "From") {
			if strings.Contains(v, "\r\n") {
				t.Fatalf("headerFields(%q) gave the folded value %q", msg, v)
			}
		}
		d, res, why := fromHeaderDomain(msg)
		if d == "" {
			if why == "" {
				t.Fatalf("fromHeaderDomain(%q) = no domain without a reason", msg)
			}
			return
		}
		if res != signal.None || why != "" || !validDomain(d) || strings.HasSuffix(d, ".") || strings.ToLower(d) != d {
			t.Fatalf("fromHeaderDomain(%q) = %q, %s, %q; want a normalized valid domain with None", msg, d, res, why)
		}
	})
}

// FuzzParseClientIP: any string gives an address or nil, never a panic,
// and an address read back from its own text is the same address.
func FuzzParseClientIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1", " 192.0.2.1:25 ", "[IPv6:2001:db8::1]", "[2001:db8::1]:25", "::ffff:192.0.2.1", "[", "[IPv6:]", "mx.example.org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip := parseClientIP(s)
		if ip == nil {
			return
		}
		if back := parseClientIP(ip.String()); !back.Equal(ip) {
			t.Fatalf("parseClientIP(%q) = %v, but parseClientIP(%q) = %v", s, ip, ip.String(), back)
		}
	})
}

// FuzzIsDMARC1: a TXT record taken as DMARC's always starts with the v
// tag, and anything taken parses or fails without a panic.
func FuzzIsDMARC1(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject", "v = DMARC1 ;p=none; sp=reject; pct=50", "v=DMARC1 p=reject", "p=reject; v=DMARC1", "v=DMARC1;;;=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !isDMARC1(s) {
			return
		}
		if !strings.HasPrefix(s, "v") {
			t.Fatalf("isDMARC1(%q) = true for a record not starting with v", s)
		}
		_, _ = dmarc.Parse(s)
	})
}

// FuzzLaterAligned: any header reads without a panic; what is returned
// is never longer than the mail, keeps its body byte for byte, and holds
// no more DKIM-Signature fields than the mail.
func FuzzLaterAligned(f *testing.F) {
	f.Add([]byte("DKIM-Signature: d=relay.test; b=AA\r\nDKIM-Signature: d=a.example;\r\n b=BB\r\nFrom: a@a.example\r\n\r\nbody\r\n"), "a.example", 1)
	f.Add([]byte("dkim-signature : d =\r\n a.example\r\n\r\n"), "A.Example", 0)
	f.Add([]byte(" folded first\r\nDKIM-Signature:d=a.example"), "a.example", 0)
	f.Add([]byte("\r\n\r\n"), "", 0)
	f.Fuzz(func(t *testing.T, msg []byte, from string, skip int) {
		got := laterAligned(msg, from, skip)
		if got == nil {
			return
		}
		if len(got) > len(msg) {
			t.Fatalf("%d bytes out of %d", len(got), len(msg))
		}
		if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 && !bytes.HasSuffix(got, msg[i+2:]) {
			t.Fatalf("body changed: %q from %q", got, msg)
		}
		if a, b := bytes.Count(bytes.ToLower(got), []byte("dkim-signature")), bytes.Count(bytes.ToLower(msg), []byte("dkim-signature")); a > b {
			t.Fatalf("%d signatures out of %d", a, b)
		}
	})
}
