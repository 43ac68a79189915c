package msgauth

import (
	"bytes"

	"github.com/twinmx/twinmx/pkg/model"
)

// canonicalLines returns raw with every line ending as CRLF, the form
// DKIM hashes (RFC 6376 §5.3: signers and verifiers work on CRLF lines).
// The corpus and some smtpd paths store bare LF; a bare CR is left alone
// as it is content, not a line end. A mail whose header never ends gets
// an empty body, so the DKIM header reader does not fail on it.
func canonicalLines(raw []byte) []byte {
	out := model.CRLF(raw)
	if !bytes.Contains(out, []byte("\r\n\r\n")) && !bytes.HasPrefix(out, []byte("\r\n")) {
		out = out[:len(out):len(out)] // append copies: out may be raw
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			out = append(out, '\r', '\n')
		}
		out = append(out, '\r', '\n')
	}
	return out
}
