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
	// dCRDot: a bare CR then "."; the dot is held back until we know it
	// is not followed by CR or LF.
	dCRDot
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
	case dCRDot:
		return "cr-dot"
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
	// ViolationDotCR is a lone dot next to a bare CR: ".\rX" at a line
	// start, or "\r.\r" / "\r.\n". A server that takes a bare CR for a
	// line end would see an end-of-data line there (SMTP smuggling).
	ViolationDotCR = "bare CR next to a lone dot"
	ViolationNUL   = "NUL byte"
)

// bareCRMark is what go-smtp is given in place of a bare CR. go-smtp's
// reader mis-frames bare CRs (see issue 3), while a NUL is an ordinary byte
// to it; a real NUL is a violation, so the session can map every NUL it
// reads back to CR without ambiguity (see Conn.DataViolation).
const bareCRMark = 0

// endMarker is what we feed go-smtp to end its DATA reader after a
// violation. It is well-formed from both states the emitted stream can be
// in (line start or inside a line), because held-back bytes are never
// emitted once the stream is dirty.
const endMarker = "\r\n.\r\n"

// RestoreBareCR turns the bare CRs that go-smtp was given as bareCRMark
// back into CRs, in place, and returns b. The session calls it on a message
// whose DATA had no violation (a NUL in the client's data is a violation,
// so every NUL here is a mark).
func RestoreBareCR(b []byte) []byte {
	for i := bytes.IndexByte(b, bareCRMark); i >= 0; {
		b[i] = '\r'
		j := bytes.IndexByte(b[i+1:], bareCRMark)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return b
}

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
// A bare CR is data, never a line end (RFC 5321 §2.3.8); real mail has
// them (the shared corpus does), and the mail must be stored byte-exact.
// It reaches go-smtp as bareCRMark. A bare LF, a NUL, or a bare CR next to
// a lone dot (the SMTP smuggling shapes) is a violation: the message is
// refused.
//
// Invariants:
//   - While the stream is clean, the emitted bytes are exactly the consumed
//     bytes with each bare CR replaced by bareCRMark, delayed by at most
//     the held-back suffix ("\r", "." or ".\r"). go-smtp's dot-unstuffing
//     reader handles such input correctly.
//   - The emitted stream never ends inside a held-back sequence, so
//     go-smtp's reader is always at a line start or inside a line, never in
//     its CR or dot states (where its state machine loses bytes or misses
//     the end, see issue 3).
//   - After the first violation nothing more is emitted until the strict end
//     is found; then endMarker is emitted. The input is always consumed up
//     to and including the strict end marker and never beyond it.
//
// With unstuff set, the parser emits the message itself instead of
// go-smtp's input: the dot of a stuffed line and the end line are dropped
// (RFC 5321 §4.5.2), bare CRs are still bareCRMark. Conn.Message reads it
// so. If the session stops reading early, go-smtp drains the rest: after
// mute, nothing more is emitted until the strict end, and then endMarker,
// because go-smtp's reader starts that rest at a line start while the
// stream may be anywhere in a line (where "x.\r\n" would otherwise look
// like an end to it).
//
// The zero value is ready for the first byte after a 354 reply.
type dataParser struct {
	st        dstate
	violation string // first violation; "" while clean
	unstuff   bool
	muted     bool
}

// mute stops all output up to the strict end (see dataParser).
func (d *dataParser) mute() { d.muted = true }

// emitting reports whether bytes are passed on: the stream is clean and
// not muted.
func (d *dataParser) emitting() bool { return d.violation == "" && !d.muted }

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
			if d.emitting() {
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

// emit appends b to out while the stream is clean and not muted.
func (d *dataParser) emit(out []byte, b ...byte) []byte {
	if !d.emitting() {
		return out
	}
	return append(out, b...)
}

// text handles byte c inside a line.
func (d *dataParser) text(out []byte, c byte) []byte {
	d.st = dText
	switch c {
	case '\r':
		d.st = dCR
	case '\n':
		d.violate(ViolationBareLF)
	case 0:
		d.violate(ViolationNUL)
	default:
		out = d.emit(out, c)
	}
	return out
}

// step advances the machine by one byte.
func (d *dataParser) step(out []byte, c byte) []byte {
	switch d.st {
	case dBOL:
		if c == '.' {
			d.st = dDot
			return out
		}
		return d.text(out, c)
	case dDot:
		switch c {
		case '\r':
			d.st = dDotCR
			return out
		case '\n', 0:
			return d.text(out, c)
		}
		// A stuffed line: the dot is not part of the message.
		if !d.unstuff {
			out = d.emit(out, '.') // go-smtp drops it
		}
		return d.text(out, c)
	case dDotCR:
		if c == '\n' {
			d.st = dEnd
			if d.unstuff {
				return out
			}
			if d.emitting() {
				return append(out, ".\r\n"...)
			}
			return append(out, endMarker...)
		}
		d.violate(ViolationDotCR)
		return d.text(out, c) // a CR may still start the CRLF "." CRLF
	case dCR:
		if c == '\n' {
			d.st = dBOL
			return d.emit(out, '\r', '\n')
		}
		out = d.emit(out, bareCRMark)
		if c == '.' {
			d.st = dCRDot
			return out
		}
		return d.text(out, c) // another CR is held again
	case dCRDot:
		if c == '\r' || c == '\n' {
			d.violate(ViolationDotCR)
			return d.text(out, c)
		}
		out = d.emit(out, '.')
		return d.text(out, c)
	default: // dText
		return d.text(out, c)
	}
}

func (d *dataParser) violate(v string) {
	if d.violation == "" {
		d.violation = v
	}
}
