package msgauth

import (
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
)

// AlignedRelaxed reports whether an authenticated domain d (a DKIM d= that
// verified) aligns with the RFC5322.From domain from in relaxed mode
// (RFC 7489 §3.1): the same organizational domain. Configuration by
// e-mail uses it to accept an admin's signature. Either name may be given
// with U-labels or A-labels.
func AlignedRelaxed(d, from string) bool {
	return aligned(d, asciiDomain(from), dmarc.AlignmentRelaxed)
}

// ASCIIDomain returns the domain d in the form msgauth compares it and
// reports it in signal.Auth (DKIMDomains, SPFDomain, FromDomain), so a
// caller can match a name it read from the mail (a DKIM d= written with
// U-labels, say) against those results.
func ASCIIDomain(d string) string { return asciiDomain(d) }

// asciiDomain returns the domain d as msgauth compares and queries it:
// lower-case, without a trailing dot, and with every internationalized
// label as its A-label (RFC 5890 §2.3.2.1).
//
// An SMTPUTF8 mail may name its domains with U-labels ("bücher.example")
// in MAIL FROM and From while DNS records and DKIM d= use the A-label
// ("xn--bcher-kva.example", RFC 8616 §4). The Go resolver refuses a
// non-ASCII name as "no such host", so without this an SPF pass could not
// be found and could not align with the From domain: DMARC failed and,
// under p=reject, a wanted mail was refused.
func asciiDomain(d string) string {
	return asciiName(strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")))
}

// asciiName converts each non-ASCII label of the DNS name n to its A-label
// and leaves every other label as it is ("_domainkey", "_dmarc" and the
// case of ASCII labels included). A label that does not convert is kept;
// its lookups then find nothing, which is never a verdict against the
// sender.
func asciiName(n string) string {
	if isASCII(n) {
		return n
	}
	// UTS #46 §4 also separates labels with the ideographic and fullwidth
	// full stops.
	n = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".").Replace(n)
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if isASCII(l) {
			continue
		}
		if a, err := idna.Lookup.ToASCII(l); err == nil {
			labels[i] = a
		}
	}
	return strings.Join(labels, ".")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
