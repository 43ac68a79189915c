package msgauth

import (
	"bytes"
	"strings"
)

// laterAligned returns msg (CRLF line ends, canonicalLines) with only the
// DKIM-Signature fields a second verification needs: those after the
// first skip whose d= aligns (relaxed) with the From domain from. Every
// other field and the body are kept as they are. It returns nil when no
// such signature is left. Fields are read as headerFields reads them.
func laterAligned(msg []byte, from string, skip int) []byte {
	out := make([]byte, 0, len(msg))
	seen, kept := 0, 0
	emit := func(f []byte) {
		if k, v, ok := bytes.Cut(f, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(k)), "DKIM-Signature") {
			seen++
			if seen <= skip || !AlignedRelaxed(signatureDomain(v), from) {
				return
			}
			kept++
		}
		out = append(out, f...)
	}
	pos, field := 0, -1 // field: where the field being read starts; -1 before the first
	for pos < len(msg) {
		n := bytes.Index(msg[pos:], []byte("\r\n"))
		if n < 0 {
			n = len(msg) - pos
		} else {
			n += 2
		}
		line := msg[pos : pos+n]
		if len(bytes.TrimSuffix(line, []byte("\r\n"))) == 0 {
			break // the empty line ending the header
		}
		if field < 0 || (line[0] != ' ' && line[0] != '\t') {
			if field >= 0 {
				emit(msg[field:pos])
			}
			field = pos
		}
		pos += n
	}
	if field >= 0 {
		emit(msg[field:pos])
	}
	if kept == 0 {
		return nil
	}
	return append(out, msg[pos:]...)
}

// signatureDomain returns the d= tag of a DKIM-Signature field's value,
// folding white space removed (RFC 6376 §3.2); "" if it has none.
func signatureDomain(v []byte) string {
	for _, tag := range bytes.Split(v, []byte(";")) {
		if k, val, ok := bytes.Cut(tag, []byte("=")); ok && string(bytes.TrimSpace(k)) == "d" {
			return string(bytes.Join(bytes.Fields(val), nil))
		}
	}
	return ""
}
