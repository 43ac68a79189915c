// Package signal holds the types spamd's signal sources hand to the
// decision: one vocabulary shared by the sender-authentication checks
// (package msgauth), the content classifier and the policy (package decide),
// so none of them imports another.
package signal

// AuthResult is the outcome of one sender-authentication check (SPF, DKIM
// or DMARC), with the result names of RFC 8601 §2.7.
type AuthResult uint8

// Results of SPF (RFC 7208 §2.6), DKIM (RFC 6376 §3.9) and DMARC (RFC 7489).
// None is the zero value: the check did not run or found no record.
const (
	None AuthResult = iota
	Pass
	Fail
	SoftFail
	Neutral
	TempError
	PermError
)

var authNames = [...]string{None: "none", Pass: "pass", Fail: "fail", SoftFail: "softfail", Neutral: "neutral", TempError: "temperror", PermError: "permerror"}

// String returns the RFC 8601 name of r ("pass", "temperror", ...).
func (r AuthResult) String() string {
	if int(r) < len(authNames) {
		return authNames[r]
	}
	return "unknown"
}

// Auth is what the sender-authentication checks found for one mail.
type Auth struct {
	SPF       AuthResult // for the envelope sender's domain (or the HELO name when MAIL FROM is empty)
	SPFDomain string
	DKIM      AuthResult // the best of the mail's DKIM signatures
	// DKIMDomains are the d= domains of the signatures that verified.
	DKIMDomains []string
	DMARC       AuthResult // for the From header's domain
	FromDomain  string     // the RFC5322.From domain DMARC judged
	// DMARCReject is true when the From domain publishes p=reject (or
	// quarantine) and DMARC failed: the domain owner asks receivers to refuse.
	DMARCReject bool
}

// Envelope is what smtpd saw of one delivery attempt (from its throw-in
// row). The zero value means "unknown" (spamd eval judges files without it).
type Envelope struct {
	ClientIP string // textual IP address, no port
	Helo     string
	From     string // envelope sender (MAIL FROM), "" for the null sender
	Rcpt     string // the recipient mailbox address being judged
}
