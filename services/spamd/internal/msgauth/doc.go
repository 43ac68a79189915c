// Package msgauth checks who sent a mail: SPF (RFC 7208) for the envelope
// sender, DKIM (RFC 6376, RFC 8301, RFC 8463) for the signatures in the
// mail, and DMARC (RFC 7489) for the From domain on top of both. It
// produces a signal.Auth for spamd's decision; it decides nothing itself.
//
// The protocol work is done by blitiri.com.ar/go/spf and the dkim and dmarc
// packages of github.com/emersion/go-msgauth. This package supplies what
// they leave to the caller: the DNS (a Resolver, with NetResolver over the
// Go DNS client aimed at a configured server), CRLF line ends, the From
// domain, the organizational domain (public suffix list), identifier
// alignment and the reading of the policy.
//
// # DNS failures
//
// A DNS failure (SERVFAIL, timeout, unreachable server, refused, ctx
// ended, lookup budget spent) is TempError, never Fail: every error the
// Resolver returns is turned into either "not found" or "temporary" before
// the libraries see it, so none can read it as a permanent verdict. Only
// NXDOMAIN/NODATA count as "no record" (SPF none, DKIM permerror "no
// key", DMARC none). DMARC is TempError when a check that could have
// aligned hit a temporary error, so a DNS outage never sets DMARCReject.
//
// # Limits
//
// One Check verifies at most Config.MaxSignatures DKIM signatures (5) and
// makes at most Config.MaxLookups DNS lookups (50); SPF keeps its own
// RFC 7208 §4.6.4 limits (10 lookups, 2 void lookups). Each lookup of a
// NetResolver has its own timeout (5s), and the whole Check ends when its
// ctx does. DKIM hashing is linear in the size of the mail, which smtpd
// bounds. Malformed mail gives None or PermError, never a panic (FuzzCheck).
//
// # Policy
//
// DMARCReject is set only for an evaluated Fail under p=reject or
// p=quarantine (sp= for a subdomain judged by its organizational domain's
// record) that applies to all mail (pct absent or 100). Several DMARC
// records at the name where discovery stops mean no policy (RFC 7489
// §6.6.3 step 5: DMARC None). Several From fields, or From authors in
// several domains, give DMARC PermError without DMARCReject. The From
// field is read as the DKIM verifier reads the header (a line without a
// colon does not end it; "From :" is a From field), so DMARC judges the
// From that DKIM signed.
//
// # Internationalized domains
//
// Domains are compared and queried as A-labels (RFC 8616): a U-label in
// MAIL FROM, HELO, From or a DKIM d= is converted first, so an SMTPUTF8
// sender's SPF pass and DKIM signature align with its From domain.
//
// Checker is safe for concurrent use; SPF and DKIM of one Check run in
// parallel.
package msgauth
