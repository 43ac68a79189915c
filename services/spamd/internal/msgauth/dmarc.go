package msgauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// dmarcInput is what DMARC judges besides the policy record: the From
// domain and the results of SPF and DKIM.
type dmarcInput struct {
	fromDomain string
	spf        signal.AuthResult
	spfDomain  string
	dkimPass   []string // d= domains of verified signatures
	dkimTemp   []string // d= domains of signatures that hit a temporary error
}

// checkDMARC finds the policy of the From domain (RFC 7489 §6.6.3) and
// applies it. It returns the result, whether the owner asks for the mail
// to be refused, and the reason for an error result.
func (c *Checker) checkDMARC(ctx context.Context, lr *libResolver, in dmarcInput) (signal.AuthResult, bool, error) {
	rec, atOrg, res, err := lookupPolicy(ctx, lr, in.fromDomain)
	if rec == nil {
		return res, false, err
	}
	res, reject := evaluateDMARC(rec, atOrg, in)
	return res, reject, nil
}

// lookupPolicy queries _dmarc.<from>, then _dmarc.<organizational domain>
// when the first has no record (RFC 7489 §6.6.3 step 3). atOrg reports
// that the record came from the organizational domain, so its sp= applies.
// A nil record comes with None (no policy), TempError or PermError.
func lookupPolicy(ctx context.Context, lr *libResolver, from string) (rec *dmarc.Record, atOrg bool, res signal.AuthResult, err error) {
	opts := &dmarc.LookupOptions{LookupTXT: lr.txtFunc(ctx)}
	rec, err = dmarc.LookupWithOptions(from, opts)
	if org := orgDomain(from); errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = dmarc.LookupWithOptions(org, opts)
		atOrg = true
	}
	switch {
	case err == nil:
		return rec, atOrg, signal.None, nil
	case errors.Is(err, dmarc.ErrNoPolicy):
		return nil, false, signal.None, nil
	case dmarc.IsTempFail(err):
		return nil, false, signal.TempError, fmt.Errorf("dmarc: policy of %s: %w", from, err)
	default:
		// A record that is there but does not parse (RFC 7489 §11.2:
		// "permerror ... syntactically incorrect DMARC record").
		return nil, false, signal.PermError, fmt.Errorf("dmarc: policy of %s: %w", from, err)
	}
}

// evaluateDMARC applies rec to in (RFC 7489 §3.1 alignment, §6.6.2
// evaluation, §6.6.4 disposition). It is pure so the rules can be tested
// by a table.
//
// Policy "never reject a wanted mail": a temporary error in a check that
// could have produced an aligned pass makes the result TempError, not
// Fail; and reject is only asked for when the record applies its policy
// to all mail (pct absent or 100), since pct<100 says the owner is still
// testing.
func evaluateDMARC(rec *dmarc.Record, atOrg bool, in dmarcInput) (signal.AuthResult, bool) {
	from := in.fromDomain
	for _, d := range in.dkimPass {
		if aligned(d, from, rec.DKIMAlignment) {
			return signal.Pass, false
		}
	}
	spfAligned := in.spfDomain != "" && aligned(in.spfDomain, from, rec.SPFAlignment)
	if in.spf == signal.Pass && spfAligned {
		return signal.Pass, false
	}
	if in.spf == signal.TempError && spfAligned {
		return signal.TempError, false
	}
	for _, d := range in.dkimTemp {
		if aligned(d, from, rec.DKIMAlignment) {
			return signal.TempError, false
		}
	}
	policy := rec.Policy
	if atOrg && rec.SubdomainPolicy != "" {
		// RFC 7489 §6.3 sp=: the policy for subdomains of the org domain.
		policy = rec.SubdomainPolicy
	}
	wholePolicy := rec.Percent == nil || *rec.Percent >= 100
	reject := wholePolicy && (policy == dmarc.PolicyReject || policy == dmarc.PolicyQuarantine)
	return signal.Fail, reject
}

// aligned reports whether an authenticated domain d aligns with the From
// domain (RFC 7489 §3.1): equal in strict mode, the same organizational
// domain in relaxed mode.
func aligned(d, from string, mode dmarc.AlignmentMode) bool {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if d == from {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	return orgDomain(d) == orgDomain(from)
}

// orgDomain is the organizational domain of d (RFC 7489 §3.2): the public
// suffix plus one label. A name that is itself a public suffix is its
// own organizational domain.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return strings.ToLower(org)
}

// fromHeaderDomain returns the RFC5322.From domain DMARC judges. When
// there is none to judge it returns "" with the DMARC result to report
// and why: None for a missing or unparsable From, PermError for several
// From fields or authors in several domains (RFC 7489 §6.6.1 leaves the
// choice; no single domain owner can speak for such a mail).
func fromHeaderDomain(msg []byte) (string, signal.AuthResult, string) {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
	// A malformed line ends the header early; what was read before it is
	// still worth judging.
	h, _ := tr.ReadMIMEHeader()
	froms := h.Values("From")
	switch len(froms) {
	case 0:
		return "", signal.None, "no from field"
	case 1:
	default:
		return "", signal.PermError, "several from fields"
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) == 0 {
		return "", signal.None, "unparsable from field"
	}
	var domain string
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", signal.None, "from address without domain"
		}
		d := strings.ToLower(strings.TrimSuffix(a.Address[at+1:], "."))
		if domain != "" && d != domain {
			return "", signal.PermError, "from addresses in several domains"
		}
		domain = d
	}
	if !validDomain(domain) {
		return "", signal.None, "from domain is not a valid name"
	}
	return domain, signal.None, ""
}
