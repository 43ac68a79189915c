package relay

import "bytes"

// canonicalLines returns raw with every bare CR and every bare LF turned
// into CRLF: the only line end SMTP has (RFC 5321 §2.3.8). A run of CRs
// that ends in LF ("\r\r\n", a common artifact of converting line ends
// twice) is one line end, not an empty line that could end a header
// section early; other bare CRs (old Mac text) are each a line end.
//
// Why: go-smtp's DATA writer stuffs dots and turns a bare LF into CRLF,
// but sends a bare CR as it is. smtpd stores a bare CR verbatim (it is
// data there, docs/smtpd.md §3) and dbctl import takes mail from files,
// so a stored mail may hold "\r.\r\n". Sent as is, a receiver that takes
// a bare CR for a line end would see the end of DATA there and read what
// follows as commands: twinmx would be the sending half of an SMTP
// smuggling attack (TEST-CATALOG item 10). As a line end, the dot after
// it is stuffed like any other.
//
// raw itself is returned, without a copy, when it has no bare CR or LF
// (mail smtpd stored: the common case).
func canonicalLines(raw []byte) []byte {
	if !hasBareLineEnd(raw) {
		return raw
	}
	out := make([]byte, 0, len(raw)+len(raw)/32+2)
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			j := i + 1
			for j < len(raw) && raw[j] == '\r' {
				j++
			}
			if j < len(raw) && raw[j] == '\n' {
				out = append(out, '\r', '\n')
				i = j
				continue
			}
			for ; i < j; i++ {
				out = append(out, '\r', '\n')
			}
			i--
		default:
			out = append(out, raw[i])
		}
	}
	return out
}

// hasBareLineEnd reports whether raw holds a CR not followed by LF or an
// LF not preceded by CR.
func hasBareLineEnd(raw []byte) bool {
	for i := 0; i < len(raw); {
		j := bytes.IndexAny(raw[i:], "\r\n")
		if j < 0 {
			return false
		}
		i += j
		if raw[i] == '\n' || i+1 >= len(raw) || raw[i+1] != '\n' {
			return true
		}
		i += 2
	}
	return false
}
