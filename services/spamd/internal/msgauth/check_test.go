package msgauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// clientIP is the address every test delivery comes from.
const clientIP = "192.0.2.10"

// clientIP6 is the IPv6 client of the SPF cases for IPv6.
const clientIP6 = "2001:db8:25::10"

// signer is one DKIM key published in the test zone.
type signer struct {
	domain, selector string
	key              crypto.Signer
}

// fixture is a loopback DNS server loaded with the records of the test
// domains, and the keys behind its DKIM records.
type fixture struct {
	zone  *testZone
	dns   *dnsServer
	ed    signer // s1._domainkey.dkim.test, Ed25519
	rsa   signer // rsa._domainkey.dkim.test, RSA 2048
	temp  signer // s1._domainkey.dkim-temp.test answers SERVFAIL
	nokey signer
	evil  signer // a key for reject.test that is not the published one
	idn   signer // s1._domainkey.xn--bcher-kva.test, signing as d=xn--bcher-kva.test
}

func dkimRecord(t *testing.T, key crypto.Signer) string {
	t.Helper()
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("marshal rsa key: %v", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	default:
		t.Fatalf("key type %T", pub)
		return ""
	}
}

func edKey(t *testing.T) crypto.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate ed25519 key: %v", err)
	}
	return k
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	z := newTestZone()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate rsa key: %v", err)
	}
	f := &fixture{
		zone:  z,
		ed:    signer{"dkim.test", "s1", edKey(t)},
		rsa:   signer{"dkim.test", "rsa", rk},
		temp:  signer{"dkim-temp.test", "s1", edKey(t)},
		nokey: signer{"dkim.test", "missing", edKey(t)},
		evil:  signer{"reject.test", "s1", edKey(t)},
		idn:   signer{"xn--bcher-kva.test", "s1", edKey(t)},
	}
	z.TXT("s1._domainkey.dkim.test", dkimRecord(t, f.ed.key))
	z.TXT("rsa._domainkey.dkim.test", dkimRecord(t, f.rsa.key))
	z.TXT("s1._domainkey.reject.test", dkimRecord(t, edKey(t)))
	z.ServFail("s1._domainkey.dkim-temp.test")
	z.TXT("_dmarc.dkim.test", "v=DMARC1; p=reject")
	z.TXT("_dmarc.dkim-temp.test", "v=DMARC1; p=reject")

	// SPF (RFC 7208 §5): the client 192.0.2.10 against each policy.
	z.TXT("spf-pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("_dmarc.spf-pass.test", "v=DMARC1; p=reject")
	z.TXT("spf-fail.test", "v=spf1 ip4:198.51.100.0/24 -all")
	z.TXT("spf-soft.test", "v=spf1 ip4:198.51.100.0/24 ~all")
	z.TXT("spf-neutral.test", "v=spf1 ?all")
	z.A("spf-none.test", clientIP)
	z.ServFail("spf-temp.test")
	z.TXT("spf-perm.test", "v=spf1 ip4:300.1.2.3 -all")
	z.TXT("spf-two.test", "v=spf1 -all")
	z.TXT("spf-two.test", "v=spf1 +all")
	z.TXT("spf-include-temp.test", "v=spf1 include:spf-temp.test -all")
	z.TXT("spf-mx.test", "v=spf1 mx -all")
	z.MX("spf-mx.test", "mx1.spf-mx.test")
	z.A("mx1.spf-mx.test", clientIP)
	z.TXT("helo.test", "v=spf1 a -all")
	z.A("helo.test", clientIP)
	// SPF for IPv6 clients (RFC 7208 §5.3, §5.6): ip6 and a (AAAA).
	z.TXT("spf-v6.test", "v=spf1 ip6:2001:db8:25::/48 -all")
	z.TXT("spf-v6a.test", "v=spf1 a -all")
	z.AAAA("spf-v6a.test", clientIP6)

	// DMARC (RFC 7489 §6.3).
	z.TXT("bounce.relaxed.test", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("_dmarc.relaxed.test", "v=DMARC1; p=reject")
	z.TXT("bounce.strict.test", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("_dmarc.strict.test", "v=DMARC1; p=reject; aspf=s")
	z.TXT("reject.test", "v=spf1 -all")
	z.TXT("_dmarc.reject.test", "v=DMARC1; p=reject")
	z.TXT("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
	z.TXT("_dmarc.monitor.test", "v=DMARC1; p=none; rua=mailto:d@monitor.test")
	z.TXT("_dmarc.pct.test", "v=DMARC1; p=reject; pct=20")
	z.TXT("_dmarc.orgpol.test", "v=DMARC1; p=none; sp=reject")
	z.A("sub.orgpol.test", clientIP)
	z.ServFail("_dmarc.dmarc-temp.test")
	z.TXT("_dmarc.badpol.test", "v=DMARC1; p=bogus")
	z.ServFail("spf-temp-aligned.test")
	z.TXT("_dmarc.spf-temp-aligned.test", "v=DMARC1; p=reject")
	// RFC 7489 §6.6.3: several DMARC records mean no DMARC; other TXT
	// records beside the one DMARC record are ignored.
	z.TXT("_dmarc.two.test", "v=DMARC1; p=reject")
	z.TXT("_dmarc.two.test", "v=DMARC1; p=quarantine")
	z.TXT("_dmarc.twoorg.test", "v=DMARC1; p=reject")
	z.TXT("_dmarc.twoorg.test", "v=DMARC1;p=reject; adkim=s")
	z.TXT("_dmarc.mixed.test", "site-verification=abc")
	z.TXT("_dmarc.mixed.test", "v=DMARC1; p=reject")

	// Internationalized domains (RFC 8616): records live at the A-label
	// of bücher.test.
	z.TXT("xn--bcher-kva.test", "v=spf1 ip4:192.0.2.0/24 -all")
	z.TXT("_dmarc.xn--bcher-kva.test", "v=DMARC1; p=reject")
	z.TXT("s1._domainkey.xn--bcher-kva.test", dkimRecord(t, f.idn.key))

	f.dns = startDNS(t, z)
	return f
}

func (f *fixture) checker(timeout time.Duration) *Checker {
	return New(NewNetResolver(ResolverConfig{Server: f.dns.Addr, Timeout: timeout}), Config{})
}

// testMail builds a CRLF mail from the given author, signed by sigs in order
// (the last one ends up on top, as each relay prepends its own).
func testMail(t *testing.T, from string, sigs ...signer) []byte {
	t.Helper()
	raw := []byte("From: Alice <" + from + ">\r\n" +
		"To: bob@twinmx.test\r\n" +
		"Subject: quarterly numbers\r\n" +
		"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@" + strings.TrimPrefix(from[strings.LastIndexByte(from, '@'):], "@") + ">\r\n" +
		"\r\n" +
		"Hello Bob,\r\nthe numbers are attached.\r\n\r\nAlice\r\n")
	for _, s := range sigs {
		var out bytes.Buffer
		err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{Domain: s.domain, Selector: s.selector, Signer: s.key})
		if err != nil {
			t.Fatalf("dkim sign d=%s s=%s: %v", s.domain, s.selector, err)
		}
		raw = out.Bytes()
	}
	return raw
}

// lfOnly turns CRLF into LF, as the corpus stores mail.
func lfOnly(raw []byte) []byte { return bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")) }

// alterBody changes one word of the body after signing.
func alterBody(raw []byte) []byte {
	return bytes.Replace(raw, []byte("numbers are"), []byte("numbers ARE"), 1)
}

func env(mailFrom string) signal.Envelope { return envFrom(clientIP, mailFrom) }

func envFrom(ip, mailFrom string) signal.Envelope {
	return signal.Envelope{ClientIP: ip, Helo: "mta.client.test", From: mailFrom, Rcpt: "bob@twinmx.test"}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	c := f.checker(2 * time.Second)
	tests := []struct {
		name string
		env  signal.Envelope
		raw  []byte
		want signal.Auth
	}{
		// SPF (RFC 7208 §2.6); DMARC none unless a record is set above.
		{"spf pass, dmarc pass by aligned spf", env("a@spf-pass.test"), testMail(t, "a@spf-pass.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-pass.test", DMARC: signal.Pass, FromDomain: "spf-pass.test"}},
		{"spf fail -all", env("a@spf-fail.test"), testMail(t, "a@spf-fail.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", FromDomain: "spf-fail.test"}},
		{"spf softfail ~all", env("a@spf-soft.test"), testMail(t, "a@spf-soft.test"),
			signal.Auth{SPF: signal.SoftFail, SPFDomain: "spf-soft.test", FromDomain: "spf-soft.test"}},
		{"spf neutral ?all", env("a@spf-neutral.test"), testMail(t, "a@spf-neutral.test"),
			signal.Auth{SPF: signal.Neutral, SPFDomain: "spf-neutral.test", FromDomain: "spf-neutral.test"}},
		{"spf none without record", env("a@spf-none.test"), testMail(t, "a@spf-none.test"),
			signal.Auth{SPF: signal.None, SPFDomain: "spf-none.test", FromDomain: "spf-none.test"}},
		{"spf none for nxdomain", env("a@nowhere.test"), testMail(t, "a@nowhere.test"),
			signal.Auth{SPF: signal.None, SPFDomain: "nowhere.test", FromDomain: "nowhere.test"}},
		{"spf temperror on servfail", env("a@spf-temp.test"), testMail(t, "a@spf-temp.test"),
			signal.Auth{SPF: signal.TempError, SPFDomain: "spf-temp.test", FromDomain: "spf-temp.test"}},
		{"spf temperror through include", env("a@spf-include-temp.test"), testMail(t, "a@spf-include-temp.test"),
			signal.Auth{SPF: signal.TempError, SPFDomain: "spf-include-temp.test", FromDomain: "spf-include-temp.test"}},
		{"spf permerror bad ip4", env("a@spf-perm.test"), testMail(t, "a@spf-perm.test"),
			signal.Auth{SPF: signal.PermError, SPFDomain: "spf-perm.test", FromDomain: "spf-perm.test"}},
		{"spf permerror two records", env("a@spf-two.test"), testMail(t, "a@spf-two.test"),
			signal.Auth{SPF: signal.PermError, SPFDomain: "spf-two.test", FromDomain: "spf-two.test"}},
		{"spf pass by mx", env("a@SPF-MX.test"), testMail(t, "a@spf-mx.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-mx.test", FromDomain: "spf-mx.test"}},
		{"spf of helo for null sender", signal.Envelope{ClientIP: clientIP, Helo: "helo.test", From: ""}, testMail(t, "mailer-daemon@helo.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "helo.test", FromDomain: "helo.test"}},
		{"spf pass ip6", envFrom(clientIP6, "a@spf-v6.test"), testMail(t, "a@spf-v6.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-v6.test", FromDomain: "spf-v6.test"}},
		{"spf fail ip6 outside the prefix", envFrom("2001:db8:26::10", "a@spf-v6.test"), testMail(t, "a@spf-v6.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-v6.test", FromDomain: "spf-v6.test"}},
		{"spf fail ip4 client of an ip6-only policy", env("a@spf-v6.test"), testMail(t, "a@spf-v6.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-v6.test", FromDomain: "spf-v6.test"}},
		{"spf pass ip6 by a (AAAA)", envFrom(clientIP6, "a@spf-v6a.test"), testMail(t, "a@spf-v6a.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-v6a.test", FromDomain: "spf-v6a.test"}},
		{"spf pass ip6 given with its port", envFrom("[2001:db8:25::10]:25", "a@spf-v6.test"), testMail(t, "a@spf-v6.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-v6.test", FromDomain: "spf-v6.test"}},
		{"spf none without envelope", signal.Envelope{}, testMail(t, "a@spf-fail.test"),
			signal.Auth{SPF: signal.None, FromDomain: "spf-fail.test"}},

		// DKIM (RFC 6376 §6.1).
		{"dkim pass ed25519 aligned, dmarc pass despite spf fail", env("a@spf-fail.test"), testMail(t, "a@dkim.test", f.ed),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Pass, DKIMDomains: []string{"dkim.test"}, DMARC: signal.Pass, FromDomain: "dkim.test"}},
		{"dkim pass rsa with lf-only line ends", env("a@spf-fail.test"), lfOnly(testMail(t, "a@dkim.test", f.rsa)),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Pass, DKIMDomains: []string{"dkim.test"}, DMARC: signal.Pass, FromDomain: "dkim.test"}},
		{"dkim fail body altered, dmarc reject", env("a@spf-fail.test"), alterBody(testMail(t, "a@dkim.test", f.ed)),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Fail, DMARC: signal.Fail, FromDomain: "dkim.test", DMARCReject: true}},
		{"dkim fail wrong key", env("a@spf-fail.test"), testMail(t, "a@reject.test", f.evil),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Fail, DMARC: signal.Fail, FromDomain: "reject.test", DMARCReject: true}},
		{"dkim none unsigned", env("a@spf-fail.test"), testMail(t, "a@dkim.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.None, DMARC: signal.Fail, FromDomain: "dkim.test", DMARCReject: true}},
		{"dkim temperror key servfail, dmarc temperror", env("a@spf-fail.test"), testMail(t, "a@dkim-temp.test", f.temp),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.TempError, DMARC: signal.TempError, FromDomain: "dkim-temp.test"}},
		{"dkim permerror no key", env("a@spf-fail.test"), testMail(t, "a@dkim.test", f.nokey),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.PermError, DMARC: signal.Fail, FromDomain: "dkim.test", DMARCReject: true}},
		{"dkim best of two: one altered-key, one good", env("a@spf-fail.test"), testMail(t, "a@dkim.test", f.nokey, f.ed),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Pass, DKIMDomains: []string{"dkim.test"}, DMARC: signal.Pass, FromDomain: "dkim.test"}},

		// DMARC (RFC 7489 §3.1, §6.6).
		{"dmarc fail: third-party dkim does not align", env("a@reject.test"), testMail(t, "a@reject.test", f.ed),
			signal.Auth{SPF: signal.Fail, SPFDomain: "reject.test", DKIM: signal.Pass, DKIMDomains: []string{"dkim.test"}, DMARC: signal.Fail, FromDomain: "reject.test", DMARCReject: true}},
		{"dmarc pass relaxed spf alignment", env("b@bounce.relaxed.test"), testMail(t, "a@relaxed.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "bounce.relaxed.test", DMARC: signal.Pass, FromDomain: "relaxed.test"}},
		{"dmarc fail strict spf alignment", env("b@bounce.strict.test"), testMail(t, "a@strict.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "bounce.strict.test", DMARC: signal.Fail, FromDomain: "strict.test", DMARCReject: true}},
		{"dmarc fail p=quarantine asks reject", env("a@spf-fail.test"), testMail(t, "a@quarantine.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "quarantine.test", DMARCReject: true}},
		{"dmarc fail p=none", env("a@spf-fail.test"), testMail(t, "a@monitor.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "monitor.test"}},
		{"dmarc fail pct<100 does not ask reject", env("a@spf-fail.test"), testMail(t, "a@pct.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "pct.test"}},
		{"dmarc sp=reject of org domain", env("a@spf-fail.test"), testMail(t, "a@sub.orgpol.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "sub.orgpol.test", DMARCReject: true}},
		{"dmarc none without record", env("a@spf-fail.test"), testMail(t, "a@spf-none.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.None, FromDomain: "spf-none.test"}},
		{"dmarc temperror on servfail", env("a@spf-fail.test"), testMail(t, "a@dmarc-temp.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.TempError, FromDomain: "dmarc-temp.test"}},
		{"dmarc permerror bad record", env("a@spf-fail.test"), testMail(t, "a@badpol.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.PermError, FromDomain: "badpol.test"}},
		{"dmarc temperror when aligned spf is temperror", env("a@spf-temp-aligned.test"), testMail(t, "a@spf-temp-aligned.test"),
			signal.Auth{SPF: signal.TempError, SPFDomain: "spf-temp-aligned.test", DMARC: signal.TempError, FromDomain: "spf-temp-aligned.test"}},
		{"dmarc permerror for two from fields", env("a@spf-fail.test"),
			[]byte("From: a@reject.test\r\nFrom: b@reject.test\r\nSubject: x\r\n\r\nbody\r\n"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.PermError}},
		{"dmarc none without from", env("a@spf-fail.test"), []byte("Subject: x\r\n\r\nbody\r\n"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test"}},
		// Several DMARC records: DMARC does not apply (RFC 7489 §6.6.3
		// step 5), not "whichever record the DNS answered first".
		{"dmarc none for two records", env("a@spf-fail.test"), testMail(t, "a@two.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.None, FromDomain: "two.test"}},
		{"dmarc none for two records at the org domain", env("a@spf-fail.test"), testMail(t, "a@sub.twoorg.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.None, FromDomain: "sub.twoorg.test"}},
		{"dmarc ignores other txt records", env("a@spf-fail.test"), testMail(t, "a@mixed.test"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "mixed.test", DMARCReject: true}},

		// The From field is read as DKIM reads the header: a line without
		// a colon does not hide the From below it, and "From :" is a From.
		{"dmarc fail for a from after a malformed line", env("a@spf-fail.test"),
			[]byte("X-Mailer line without colon\r\nFrom: Bank <service@reject.test>\r\nSubject: x\r\n\r\nbody\r\n"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "reject.test", DMARCReject: true}},
		{"dmarc permerror for a second from with space before colon", env("a@spf-pass.test"),
			[]byte("From: a@spf-pass.test\r\nFrom : Bank <service@reject.test>\r\nSubject: x\r\n\r\nbody\r\n"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "spf-pass.test", DMARC: signal.PermError}},
		// A display name in a charset net/mail does not know (Outlook's
		// windows-1252) hid the From domain: DMARC None, so a forger of a
		// p=reject domain escaped DMARC.
		{"dmarc fail for a from with a display name in an unknown charset", env("a@spf-fail.test"),
			[]byte("From: =?x-unknown?q?Bank?= <service@reject.test>\r\nSubject: x\r\n\r\nbody\r\n"),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DMARC: signal.Fail, FromDomain: "reject.test", DMARCReject: true}},

		// SMTPUTF8 senders: U-labels are checked and aligned as A-labels.
		{"idn envelope sender: spf pass aligns with an a-label from", env("a@Bücher.test"), testMail(t, "a@xn--bcher-kva.test"),
			signal.Auth{SPF: signal.Pass, SPFDomain: "xn--bcher-kva.test", DMARC: signal.Pass, FromDomain: "xn--bcher-kva.test"}},
		{"idn from: dkim of the a-label aligns", env("a@spf-fail.test"), testMail(t, "a@bücher.test", f.idn),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Pass, DKIMDomains: []string{"xn--bcher-kva.test"}, DMARC: signal.Pass, FromDomain: "xn--bcher-kva.test"}},
		{"idn d= written with u-labels", env("a@spf-fail.test"), testMail(t, "a@xn--bcher-kva.test", signer{"bücher.test", "s1", f.idn.key}),
			signal.Auth{SPF: signal.Fail, SPFDomain: "spf-fail.test", DKIM: signal.Pass, DKIMDomains: []string{"xn--bcher-kva.test"}, DMARC: signal.Pass, FromDomain: "xn--bcher-kva.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Check(t.Context(), tt.env, tt.raw)
			if !equalAuth(got, tt.want) {
				t.Errorf("Check(%s) =\n  %s\nwant\n  %s", tt.name, fmtAuth(got), fmtAuth(tt.want))
			}
		})
	}
}

func equalAuth(a, b signal.Auth) bool {
	return a.SPF == b.SPF && a.SPFDomain == b.SPFDomain && a.DKIM == b.DKIM &&
		slices.Equal(a.DKIMDomains, b.DKIMDomains) && a.DMARC == b.DMARC &&
		a.FromDomain == b.FromDomain && a.DMARCReject == b.DMARCReject
}

func fmtAuth(a signal.Auth) string {
	return fmt.Sprintf("spf=%s (%s) dkim=%s %v dmarc=%s (%s) reject=%v",
		a.SPF, a.SPFDomain, a.DKIM, a.DKIMDomains, a.DMARC, a.FromDomain, a.DMARCReject)
}

// onlyTempOrNone fails t unless every result of a is TempError or None and
// DMARCReject is false: what a DNS outage may produce.
func onlyTempOrNone(t *testing.T, what string, a signal.Auth) {
	t.Helper()
	for _, r := range []signal.AuthResult{a.SPF, a.DKIM, a.DMARC} {
		if r != signal.TempError && r != signal.None {
			t.Errorf("%s: got %s, want only temperror/none", what, fmtAuth(a))
			return
		}
	}
	if a.DMARCReject {
		t.Errorf("%s: got %s, want no DMARCReject", what, fmtAuth(a))
	}
}

// TestCheckDNSOutage stops the DNS server: the mails that pass or fail
// above must now give only TempError or None, never Fail, never reject.
func TestCheckDNSOutage(t *testing.T) {
	f := newFixture(t)
	c := f.checker(time.Second)
	mails := []struct {
		name string
		env  signal.Envelope
		raw  []byte
	}{
		{"spf fail, dmarc reject domain", env("a@reject.test"), testMail(t, "a@reject.test")},
		{"dkim signed", env("a@spf-fail.test"), testMail(t, "a@dkim.test", f.ed)},
		{"dkim altered", env("a@spf-fail.test"), alterBody(testMail(t, "a@dkim.test", f.ed))},
		{"spf pass domain", env("a@spf-pass.test"), testMail(t, "a@spf-pass.test")},
		{"helo", signal.Envelope{ClientIP: clientIP, Helo: "helo.test"}, testMail(t, "x@quarantine.test")},
	}
	// Sanity: with the server up, the first mail is a DMARC reject.
	if got := c.Check(t.Context(), mails[0].env, mails[0].raw); !got.DMARCReject || got.SPF != signal.Fail {
		t.Fatalf("before outage: %s, want spf fail and dmarc reject", fmtAuth(got))
	}
	f.dns.Stop(t)
	for _, m := range mails {
		t.Run(m.name, func(t *testing.T) {
			got := c.Check(t.Context(), m.env, m.raw)
			onlyTempOrNone(t, "server stopped", got)
			if got.SPF != signal.TempError && m.env.ClientIP != "" {
				t.Errorf("server stopped: spf = %s, want temperror", got.SPF)
			}
		})
	}
}

// TestCheckUnansweredDNS points the resolver at a socket that never
// answers: each lookup ends at the per-lookup timeout as TempError.
func TestCheckUnansweredDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	f := newFixtureKeysOnly(t)
	c := New(NewNetResolver(ResolverConfig{Server: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond}), Config{})
	start := time.Now()
	got := c.Check(t.Context(), env("a@reject.test"), testMail(t, "a@reject.test", f.ed))
	onlyTempOrNone(t, "unanswered", got)
	if got.SPF != signal.TempError || got.DKIM != signal.TempError || got.DMARC != signal.TempError {
		t.Errorf("unanswered: %s, want temperror everywhere", fmtAuth(got))
	}
	// SPF and DKIM run in parallel, DMARC after: about two timeouts.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("unanswered: Check took %v, want about 400ms", d)
	}
}

// newFixtureKeysOnly returns signers without a DNS server.
func newFixtureKeysOnly(t *testing.T) *fixture {
	return &fixture{ed: signer{"dkim.test", "s1", edKey(t)}}
}

// TestCheckContextDone: a Check whose ctx has ended makes no lookup and
// yields no verdict against the sender.
func TestCheckContextDone(t *testing.T) {
	f := newFixture(t)
	c := f.checker(2 * time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	got := c.Check(ctx, env("a@reject.test"), testMail(t, "a@reject.test", f.ed))
	onlyTempOrNone(t, "ctx done", got)
	if n := f.zone.Asked(""); n != 0 {
		t.Errorf("ctx done: %d questions asked, want 0", n)
	}
}

// TestCheckManySignatures: 50 signatures cost at most MaxSignatures key
// lookups, and the verified ones still count.
func TestCheckManySignatures(t *testing.T) {
	f := newFixture(t)
	c := f.checker(2 * time.Second)
	sigs := make([]signer, 50)
	for i := range sigs {
		sigs[i] = f.ed
	}
	raw := testMail(t, "a@dkim.test", sigs...)
	// Each signature is a field at the start of a line (h= lists the
	// earlier ones too, so count line starts only).
	if n := bytes.Count(append([]byte("\r\n"), raw...), []byte("\r\nDKIM-Signature:")); n != 50 {
		t.Fatalf("test mail has %d signatures, want 50", n)
	}
	got := c.Check(t.Context(), env("a@spf-fail.test"), raw)
	if got.DKIM != signal.Pass || got.DMARC != signal.Pass {
		t.Errorf("50 signatures: %s, want dkim pass and dmarc pass", fmtAuth(got))
	}
	if n := f.zone.Asked("_domainkey"); n > defaultMaxSignatures {
		t.Errorf("50 signatures: %d key lookups, want at most %d", n, defaultMaxSignatures)
	}
}

// TestCheckLookupBudget: a lookup budget of 1 leaves DKIM and DMARC
// without DNS, which must read as TempError, not as a missing key.
func TestCheckLookupBudget(t *testing.T) {
	f := newFixture(t)
	c := New(NewNetResolver(ResolverConfig{Server: f.dns.Addr, Timeout: 2 * time.Second}), Config{MaxLookups: 1})
	got := c.Check(t.Context(), signal.Envelope{}, testMail(t, "a@dkim.test", f.ed, f.ed))
	// With no client IP, SPF makes no lookup; the two key lookups share one.
	if got.DKIM != signal.Pass && got.DKIM != signal.TempError {
		t.Errorf("budget 1: dkim = %s, want pass or temperror", got.DKIM)
	}
	if got.DMARC == signal.Fail || got.DMARCReject {
		t.Errorf("budget 1: %s, want no dmarc fail", fmtAuth(got))
	}
}

func TestParseClientIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1",
		" 192.0.2.1:25 ":     "192.0.2.1",
		"[192.0.2.1]":        "192.0.2.1",
		"2001:db8::1":        "2001:db8::1",
		"[2001:db8::1]:25":   "2001:db8::1",
		"[IPv6:2001:db8::1]": "2001:db8::1",
		"[ipv6:::1]":         "::1",
		"::1":                "::1",
		"":                   "<nil>",
		"[IPv6:]":            "<nil>",
		"mx.example.org":     "<nil>",
	} {
		if got := parseClientIP(in).String(); got != want {
			t.Errorf("parseClientIP(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestCheckAuthorSignatureBelowRelays: each relay prepends its own
// signature, so the author's, the one DMARC needs, comes last. With more
// relay signatures than MaxSignatures it went unverified: DMARC failed and
// under p=reject a wanted mail was refused. Signatures that align with the
// From domain are verified beyond the bound, and no more than
// MaxSignatures of them, so junk signatures cost bounded lookups.
func TestCheckAuthorSignatureBelowRelays(t *testing.T) {
	f := newFixture(t)
	c := f.checker(2 * time.Second)
	relays := []signer{f.ed}
	for range defaultMaxSignatures {
		relays = append(relays, f.idn)
	}
	got := c.Check(t.Context(), env("a@spf-fail.test"), testMail(t, "a@dkim.test", relays...))
	if got.DMARC != signal.Pass || got.DMARCReject || !slices.Contains(got.DKIMDomains, "dkim.test") {
		t.Errorf("author's signature below %d relay signatures: %s, want dmarc pass", defaultMaxSignatures, fmtAuth(got))
	}

	// Twenty aligned signatures without a key, under the relays': the
	// second look verifies at most MaxSignatures of them.
	junk := make([]signer, 0, 20+defaultMaxSignatures)
	for range 20 {
		junk = append(junk, f.nokey)
	}
	for range defaultMaxSignatures {
		junk = append(junk, f.idn)
	}
	before := f.zone.Asked("missing._domainkey")
	got = c.Check(t.Context(), env("a@spf-fail.test"), testMail(t, "a@dkim.test", junk...))
	if got.DMARC != signal.Fail {
		t.Errorf("only keyless aligned signatures: %s, want dmarc fail", fmtAuth(got))
	}
	if n := f.zone.Asked("missing._domainkey") - before; n > defaultMaxSignatures {
		t.Errorf("20 aligned signatures below the bound: %d key lookups, want at most %d", n, defaultMaxSignatures)
	}
}

// TestLaterAligned: only the aligned signatures after the first skip are
// kept, every other field and the body byte for byte, folding included.
func TestLaterAligned(t *testing.T) {
	msg := []byte("DKIM-Signature: v=1; d=relay.test; b=AA\r\n" +
		"DKIM-Signature: v=1; d=a.example;\r\n b=BB\r\n" +
		"Received: from x\r\n\tby y\r\n" +
		"dkim-signature : v=1; d =\r\n sub.a.example; b=CC\r\n" +
		"DKIM-Signature: v=1; d=other.test; b=DD\r\n" +
		"From: a@a.example\r\n\r\nDKIM-Signature: body, not a field\r\n")
	want := "Received: from x\r\n\tby y\r\n" +
		"dkim-signature : v=1; d =\r\n sub.a.example; b=CC\r\n" +
		"From: a@a.example\r\n\r\nDKIM-Signature: body, not a field\r\n"
	if got := string(laterAligned(msg, "a.example", 2)); got != want {
		t.Errorf("laterAligned skip 2:\n%q\nwant\n%q", got, want)
	}
	if got := laterAligned(msg, "b.example", 0); got != nil {
		t.Errorf("laterAligned with nothing aligned: %q, want nil", got)
	}
}
