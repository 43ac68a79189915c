package msgauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
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

// lookupPolicy is DMARC policy discovery (RFC 7489 §6.6.3): it queries
// _dmarc.<from>, then _dmarc.<organizational domain> when the first has no
// DMARC record (step 3). atOrg reports that the record came from the
// organizational domain, so its sp= applies. A nil record comes with None
// (no policy, or several records: step 5 then applies no DMARC at all),
// TempError or PermError.
func lookupPolicy(ctx context.Context, lr *libResolver, from string) (rec *dmarc.Record, atOrg bool, res signal.AuthResult, err error) {
	rec, err = lookupRecord(ctx, lr, from)
	if org := orgDomain(from); errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = lookupRecord(ctx, lr, org)
		atOrg = true
	}
	var de *net.DNSError
	switch {
	case err == nil:
		return rec, atOrg, signal.None, nil
	case errors.Is(err, dmarc.ErrNoPolicy):
		return nil, false, signal.None, nil
	case errors.Is(err, errSeveralRecords):
		return nil, false, signal.None, fmt.Errorf("dmarc: policy of %s: %w", from, err)
	case errors.As(err, &de):
		// libResolver turned every other DNS error into a temporary one.
		return nil, false, signal.TempError, fmt.Errorf("dmarc: policy of %s: %w", from, err)
	default:
		// A record that is there but does not parse (RFC 7489 §11.2:
		// "permerror ... syntactically incorrect DMARC record").
		return nil, false, signal.PermError, fmt.Errorf("dmarc: policy of %s: %w", from, err)
	}
}

// errSeveralRecords: a domain publishes more than one DMARC record.
var errSeveralRecords = errors.New("several DMARC records")

// lookupRecord fetches and parses the one DMARC record of domain (RFC 7489
// §6.6.3 steps 1, 2 and 5). It returns dmarc.ErrNoPolicy when there is
// none, errSeveralRecords when there are several, the resolver's
// *net.DNSError for a temporary failure, and a parse error otherwise.
//
// go-msgauth's own Lookup takes the first of several records; which one
// that is depends on the order of the DNS answer, so a domain with both
// p=none and p=reject would be rejected at random. The RFC says such a
// domain has no policy.
func lookupRecord(ctx context.Context, lr *libResolver, domain string) (*dmarc.Record, error) {
	txts, err := lr.LookupTXT(ctx, "_dmarc."+domain)
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return nil, dmarc.ErrNoPolicy
	case err != nil:
		return nil, err
	}
	var recs []string
	for _, txt := range txts {
		if isDMARC1(txt) {
			recs = append(recs, txt)
		}
	}
	switch len(recs) {
	case 0:
		return nil, dmarc.ErrNoPolicy
	case 1:
		rec, err := dmarc.Parse(recs[0])
		if err != nil {
			return nil, fmt.Errorf("parse record of %s: %w", domain, err)
		}
		return rec, nil
	default:
		return nil, fmt.Errorf("_dmarc.%s has %d: %w", domain, len(recs), errSeveralRecords)
	}
}

// isDMARC1 reports whether txt is a DMARC record: one that starts with the
// version tag v=DMARC1 (RFC 7489 §6.4: v comes first, white space may
// surround "=", the value is case-sensitive). Other TXT records at the
// same name are not DMARC's and are ignored (§6.6.3 step 2).
func isDMARC1(txt string) bool {
	tag, _, _ := strings.Cut(txt, ";")
	k, v, ok := strings.Cut(tag, "=")
	return ok && strings.TrimRight(k, " \t") == "v" && strings.TrimSpace(v) == "DMARC1"
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
	d = asciiDomain(d)
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
	froms := headerFields(msg, "From")
	switch len(froms) {
	case 0:
		return "", signal.None, "no from field"
	case 1:
	default:
		return "", signal.PermError, "several from fields"
	}
	addrs, err := fromParser.ParseList(froms[0])
	if err != nil || len(addrs) == 0 {
		return "", signal.None, "unparsable from field"
	}
	var domain string
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", signal.None, "from address without domain"
		}
		d := asciiDomain(a.Address[at+1:])
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

// fromParser reads the From addresses whatever charset an encoded-word
// display name is in (only the addresses are used). net/mail alone
// decodes UTF-8, ISO-8859-1 and US-ASCII and fails the whole field on
// any other charset, so "=?windows-1252?q?J=F6rg?= <j@a.example>", as
// Outlook writes it, had no From domain: DMARC None, and a forger of a
// p=reject domain escaped DMARC by naming any unknown charset.
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// headerFields returns the unfolded values of the header fields called
// name (case-insensitive), top to bottom, reading the header the way the
// DKIM verifier does, so that DMARC judges the From field DKIM signed:
// every line up to the first empty one belongs to the header, a line that
// starts with white space continues the field before it, and a field's
// name is the text before its first colon, white space trimmed ("From :"
// is a From field, RFC 5322 §4.5.1 obs-optional). A line without a colon
// names no field and is skipped.
//
// net/textproto stopped at the first malformed line instead, so one line
// without a colon above a forged From hid it from DMARC (no p=reject),
// and a second "From :" field went unseen (no permerror for two From).
// msg has CRLF line ends (canonicalLines).
func headerFields(msg []byte, name string) []string {
	var (
		fields []string
		cur    []byte // the field being unfolded; nil before the first
	)
	flush := func() {
		if k, v, ok := bytes.Cut(cur, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(k)), name) {
			fields = append(fields, string(bytes.TrimSpace(v)))
		}
	}
	for len(msg) > 0 {
		line, rest, _ := bytes.Cut(msg, []byte("\r\n"))
		msg = rest
		if len(line) == 0 {
			break
		}
		if cur != nil && (line[0] == ' ' || line[0] == '\t') {
			// RFC 5322 §2.2.3: unfolding removes the CRLF only.
			cur = append(cur, line...)
			continue
		}
		if cur != nil {
			flush()
		}
		cur = append([]byte(nil), line...)
	}
	if cur != nil {
		flush()
	}
	return fields
}
