package guard

import "bytes"

// The DATA stream state machine. It is pure (no I/O) so that it can be
// table-tested and fuzzed on its own; Conn drives it from Read.

// dstate is the strict RFC 5321 position within the DATA stream.
type dstate uint8

const (
	// dBOL: at the beginning of a line. The 354 reply counts as a line
	// start (RFC 5321 §4.1.1.4: the end marker may be the first line).
	dBOL dstate = iota
	// dDot: "." seen at the beginning of a line; held back.
	dDot
	// dDotCR: ".\r" seen at the beginning of a line; held back.
	dDotCR
	// dCR: "\r" seen; held back until we know whether LF follows.
	dCR
	// dText: inside a line.
	dText
	// dEnd: CRLF "." CRLF consumed; the parser takes no more input.
	dEnd
)

func (s dstate) String() string {
	switch s {
	case dBOL:
		return "bol"
	case dDot:
		return "dot"
	case dDotCR:
		return "dot-cr"
	case dCR:
		return "cr"
	case dText:
		return "text"
	case dEnd:
		return "end"
	}
	return "invalid"
}

// Violations reported by Conn.DataViolation.
const (
	ViolationBareLF = "bare LF"
	ViolationBareCR = "bare CR"
	ViolationNUL    = "NUL byte"
)

// endMarker is what we feed go-smtp to end its DATA reader after a
// violation. It is well-formed from both states the emitted stream can be
// in (line start or inside a line), because held-back bytes are never
// emitted once the stream is dirty.
const endMarker = "\r\n.\r\n"

// textRun returns the length of the prefix of b without CR, LF or NUL.
func textRun(b []byte) int {
	n := len(b)
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		n = i
	}
	if i := bytes.IndexByte(b[:n], '\n'); i >= 0 {
		n = i
	}
	if i := bytes.IndexByte(b[:n], 0); i >= 0 {
		n = i
	}
	return n
}

// dataParser splits a DATA stream at the strict end marker CRLF "." CRLF
// (RFC 5321 §2.3.8, §4.1.1.4) and decides which bytes go-smtp may see.
//
// Invariants:
//   - While the stream is clean (every CR is followed by LF, every LF is
//     preceded by CR, no NUL), the emitted bytes are exactly the consumed
//     bytes, delayed by at most the held-back suffix ("\r", "." or ".\r").
//     go-smtp's dot-unstuffing reader handles such input correctly.
//   - The emitted stream never ends inside a held-back sequence, so
//     go-smtp's reader is always at a line start or inside a line, never in
//     its CR or dot states (where its state machine loses bytes or misses
//     the end, see issue 3).
//   - After the first violation nothing more is emitted until the strict end
//     is found; then endMarker is emitted. The input is always consumed up
//     to and including the strict end marker and never beyond it.
//
// The zero value is ready for the first byte after a 354 reply.
type dataParser struct {
	st        dstate
	violation string // first violation; "" while clean
}

// ended reports whether the strict end marker has been consumed.
func (d *dataParser) ended() bool { return d.st == dEnd }

// feed consumes bytes of in up to and including the strict end marker,
// appends the bytes go-smtp should see to out, and returns the extended
// slice and the number of input bytes consumed.
func (d *dataParser) feed(out, in []byte) ([]byte, int) {
	i := 0
	for i < len(in) && d.st != dEnd {
		if d.st == dBOL {
			if c := in[i]; c != '.' && c != '\r' && c != '\n' && c != 0 {
				d.st = dText // the fast path below takes the line
			}
		}
		if d.st == dText {
			// Fast path: a run of ordinary bytes inside a line, found with
			// the (vectorised) IndexByte rather than a byte loop, and its
			// CRLF if it follows.
			end := i + textRun(in[i:])
			if end+1 < len(in) && in[end] == '\r' && in[end+1] == '\n' {
				end += 2
				d.st = dBOL
			}
			if d.violation == "" {
				out = append(out, in[i:end]...)
			}
			i = end
			if d.st == dBOL || i == len(in) {
				continue
			}
			// A special byte: fall through to step.
		}
		c := in[i]
		i++
		out = d.step(out, c)
	}
	return out, i
}

// step advances the machine by one byte.
func (d *dataParser) step(out []byte, c byte) []byte {
	clean := d.violation == ""
	if c == 0 {
		if d.st == dCR || d.st == dDotCR {
			// The held CR came first and is bare.
			d.violate(ViolationBareCR)
		}
		d.violate(ViolationNUL)
		// A NUL is ordinary text for the strict end search.
		d.st = dText
		return out
	}
	switch d.st {
	case dBOL:
		switch c {
		case '.':
			d.st = dDot
			return out
		case '\r':
			d.st = dCR
			return out
		case '\n':
			d.violate(ViolationBareLF)
			d.st = dText
			return out
		}
		d.st = dText
		if clean {
			out = append(out, c)
		}
		return out
	case dDot:
		switch c {
		case '\r':
			d.st = dDotCR
			return out
		case '\n':
			d.violate(ViolationBareLF)
			d.st = dText
			return out
		}
		d.st = dText
		if clean {
			out = append(out, '.', c)
		}
		return out
	case dDotCR:
		if c == '\n' {
			d.st = dEnd
			if clean {
				return append(out, ".\r\n"...)
			}
			return append(out, endMarker...)
		}
		d.violate(ViolationBareCR)
		if c == '\r' {
			// Could still be the CR of a CRLF "." CRLF.
			d.st = dCR
		} else {
			d.st = dText
		}
		return out
	case dCR:
		switch c {
		case '\n':
			d.st = dBOL
			if clean {
				out = append(out, '\r', '\n')
			}
			return out
		case '\r':
			d.violate(ViolationBareCR)
			return out // still dCR: the second CR may start a CRLF
		}
		d.violate(ViolationBareCR)
		d.st = dText
		return out
	default: // dText
		switch c {
		case '\r':
			d.st = dCR
		case '\n':
			d.violate(ViolationBareLF)
		default:
			if clean {
				out = append(out, c)
			}
		}
		return out
	}
}

func (d *dataParser) violate(v string) {
	if d.violation == "" {
		d.violation = v
	}
}
