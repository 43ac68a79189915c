package msgauth

import "bytes"

// canonicalLines returns raw with every line ending as CRLF, the form
// DKIM hashes (RFC 6376 §5.3: signers and verifiers work on CRLF lines).
// The corpus and some smtpd paths store bare LF; a bare CR is left alone
// as it is content, not a line end. A mail whose header never ends gets
// an empty body, so the DKIM header reader does not fail on it.
func canonicalLines(raw []byte) []byte {
	n := bytes.Count(raw, []byte("\n"))
	out := make([]byte, 0, len(raw)+n+4)
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b == '\n' && (i == 0 || raw[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	if !bytes.Contains(out, []byte("\r\n\r\n")) && !bytes.HasPrefix(out, []byte("\r\n")) {
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			out = append(out, '\r', '\n')
		}
		out = append(out, '\r', '\n')
	}
	return out
}
