package msgauth

import (
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// AlignedRelaxed reports whether an authenticated domain d (a DKIM d= that
// verified) aligns with the RFC5322.From domain from in relaxed mode
// (RFC 7489 §3.1): the same organizational domain. Configuration by
// e-mail uses it to accept an admin's signature.
func AlignedRelaxed(d, from string) bool {
	return aligned(d, strings.ToLower(strings.TrimSuffix(from, ".")), dmarc.AlignmentRelaxed)
}
