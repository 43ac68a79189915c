package guard

import (
	"bytes"
	"testing"
)

// goSMTPReader models go-smtp's dataReader (data.go, the same in v0.25.1
// and v0.26.0): the same
// states and transitions, including its quirks (a CR after a CR leaves the
// CR state; ".\r" followed by anything but LF drops the CR). The tests use
// it to check what go-smtp makes of the bytes the guard passes on.
func goSMTPReader(in []byte) (out []byte, consumed int, eof bool) {
	const (
		beginLine = iota
		dot
		dotCR
		cr
		data
	)
	st := beginLine
	for i, c := range in {
		switch st {
		case beginLine:
			if c == '.' {
				st = dot
				continue
			}
			if c == '\r' {
				st = cr
			} else {
				st = data
			}
		case dot:
			if c == '\r' {
				st = dotCR
				continue
			}
			st = data
		case dotCR:
			if c == '\n' {
				return out, i + 1, true
			}
			st = data
		case cr:
			if c == '\n' {
				st = beginLine
			} else {
				st = data
			}
		case data:
			if c == '\r' {
				st = cr
			}
		}
		out = append(out, c)
	}
	return out, len(in), false
}

// strictReference parses in per RFC 5321 without a state machine: the data
// ends at the first CRLF "." CRLF (with the 354 as a line start), lines
// starting with "." lose it, and the data is clean if it has no NUL, no
// bare LF and no lone dot next to a bare CR (".\rX" at a line start,
// "\r.\r", "\r.\n"). Other bare CRs are data. end is -1 if there is no end
// marker.
func strictReference(in []byte) (msg []byte, end int, clean bool) {
	i := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
	if i < 0 {
		return nil, -1, false
	}
	end = i + 3
	data := in[:i] // ends with CRLF unless empty
	clean = bytes.IndexByte(data, 0) < 0
	for j, c := range data {
		if c == '\n' && (j == 0 || data[j-1] != '\r') {
			clean = false
		}
		if c != '.' || j+1 >= len(data) {
			continue
		}
		lineStart := j == 0 || (j >= 2 && data[j-2] == '\r' && data[j-1] == '\n')
		afterBareCR := j >= 1 && data[j-1] == '\r'
		next := data[j+1]
		if lineStart && next == '\r' && (j+2 >= len(data) || data[j+2] != '\n') {
			clean = false
		}
		if afterBareCR && (next == '\r' || next == '\n') {
			clean = false
		}
	}
	for _, line := range bytes.SplitAfter(data, []byte("\r\n")) {
		msg = append(msg, bytes.TrimPrefix(line, []byte("."))...)
	}
	return msg, end, clean
}

func TestDataParser(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		out       string // bytes go-smtp sees
		consumed  int
		ended     bool
		violation string
	}{
		{"empty message", ".\r\n", ".\r\n", 3, true, ""},
		{"one line", "a\r\n.\r\nQUIT\r\n", "a\r\n.\r\n", 6, true, ""},
		{"stuffed", "..a\r\n.\r\n", "..a\r\n.\r\n", 8, true, ""},
		{"held CR", "a\r", "a", 2, false, ""},
		{"held dot", "a\r\n.", "a\r\n", 4, false, ""},
		{"held dot CR", "a\r\n.\r", "a\r\n", 5, false, ""},
		{"bare LF", "a\nb\r\n.\r\nX", "a\r\n.\r\n", 8, true, ViolationBareLF},
		{"bare CR is data", "a\rb\r\n.\r\n", "a\x00b\r\n.\r\n", 8, true, ""},
		{"CR CR LF", "a\r\r\n.\r\n", "a\x00\r\n.\r\n", 7, true, ""},
		{"bare CR dot text", "\r.x\r\n.\r\n", "\x00.x\r\n.\r\n", 8, true, ""},
		{"dot CR X", "a\r\n.\rX\r\n.\r\n", "a\r\n\r\n.\r\n", 11, true, ViolationDotCR},
		{"CR dot CR", "a\r.\r\n.\r\n", "a\x00\r\n.\r\n", 8, true, ViolationDotCR},
		{"CR dot LF", "a\r.\nb\r\n.\r\n", "a\x00\r\n.\r\n", 10, true, ViolationDotCR},
		{"NUL", "\x00\r\n.\r\n", "\r\n.\r\n", 6, true, ViolationNUL},
		{"LF dot LF no end", "a\n.\n", "a", 4, false, ViolationBareLF},
		{"dot LF at start", ".\n\r\n.\r\n", "\r\n.\r\n", 7, true, ViolationBareLF},
	}
	for _, tt := range tests {
		var d dataParser
		out, n := d.feed(nil, []byte(tt.in))
		if string(out) != tt.out || n != tt.consumed || d.ended() != tt.ended || d.violation != tt.violation {
			t.Errorf("%s: feed(%q) = %q, %d, ended %v, violation %q; want %q, %d, %v, %q",
				tt.name, tt.in, out, n, d.ended(), d.violation, tt.out, tt.consumed, tt.ended, tt.violation)
		}
	}
}

// checkDataParser checks the dataParser invariants on in, fed in chunks
// whose sizes come from sizes.
func checkDataParser(t *testing.T, in []byte, sizes []byte) {
	var d dataParser
	var out []byte
	consumed := 0
	for k := 0; consumed < len(in) && !d.ended(); k++ {
		step := len(in) - consumed
		if len(sizes) > 0 {
			step = min(step, 1+int(sizes[k%len(sizes)]))
		}
		var n int
		out, n = d.feed(out, in[consumed:consumed+step])
		if n > step || (n < step && !d.ended()) {
			t.Fatalf("feed consumed %d of %d (ended %v)", n, step, d.ended())
		}
		consumed += n
	}
	msg, end, clean := strictReference(in)
	if end >= 0 {
		if !d.ended() || consumed != end {
			t.Fatalf("in %q: consumed %d (ended %v), want strict end %d", in, consumed, d.ended(), end)
		}
		got, n, eof := goSMTPReader(out)
		if !eof || n != len(out) {
			t.Fatalf("in %q: go-smtp reader on %q: eof %v at %d, want eof at %d", in, out, eof, n, len(out))
		}
		if clean {
			if d.violation != "" || !bytes.Equal(out, markBareCR(in[:end])) || !bytes.Equal(RestoreBareCR(got), msg) {
				t.Fatalf("clean in %q: out %q violation %q got %q; want pass-through and %q", in, out, d.violation, got, msg)
			}
		} else if d.violation == "" {
			t.Fatalf("unclean in %q: no violation", in)
		}
		return
	}
	if d.ended() || consumed != len(in) {
		t.Fatalf("in %q without end marker: ended %v consumed %d", in, d.ended(), consumed)
	}
	// Whatever was emitted so far, the end marker the guard feeds after a
	// violation must end go-smtp's reader exactly.
	tail := append(bytes.Clone(out), endMarker...)
	if _, n, eof := goSMTPReader(tail); !eof || n != len(tail) {
		t.Fatalf("in %q: emitted %q leaves go-smtp's reader in a held state", in, out)
	}
}

// markBareCR returns b with every CR that is not followed by LF replaced by
// bareCRMark, as the guard hands data to go-smtp.
func markBareCR(b []byte) []byte {
	out := bytes.Clone(b)
	for j, c := range out {
		if c == '\r' && (j+1 >= len(out) || out[j+1] != '\n') {
			out[j] = bareCRMark
		}
	}
	return out
}

// FuzzDataParser: arbitrary client bytes after a 354. Invariants: no panic;
// chunking does not matter; the input is consumed exactly up to the strict
// end; go-smtp's reader ends exactly at the end of what it is given; clean
// data passes through raw and unstuffs to the strict message; unclean data
// reports a violation.
func FuzzDataParser(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "..a\r\n.\r\n", "a\n.\n", "a\n.\r\n", "a\r.\r", "a\r\n.\r",
		"a\r\n.\n", "a\r.\r\n", ".\n", "a\r\r\n.\r\n", "a\r\n.\rX\r\n.\r\n", "a\x00\r\n.\r\n",
		"a\r\n.\r\r\n.\r\n", "\r\n\r\n.\r\nMAIL FROM:<x>\r\n",
	} {
		f.Add([]byte(s), []byte{0})
		f.Add([]byte(s), []byte{2, 0, 1})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		checkDataParser(t, in, sizes)
		checkUnstuffed(t, in, sizes)
	})
}

// feedChunks feeds in to d in chunks whose sizes come from sizes, and
// returns the output of the chunks from index keep on and the bytes
// consumed. before(k) runs ahead of chunk k.
func feedChunks(t *testing.T, d *dataParser, in, sizes []byte, keep int, before func(k int)) (out []byte, consumed int) {
	for k := 0; consumed < len(in) && !d.ended(); k++ {
		before(k)
		step := len(in) - consumed
		if len(sizes) > 0 {
			step = min(step, 1+int(sizes[k%len(sizes)]))
		}
		if k < keep {
			out = out[:0]
		}
		var n int
		out, n = d.feed(out, in[consumed:consumed+step])
		if k < keep {
			out = out[:0]
		}
		if n > step || (n < step && !d.ended()) {
			t.Fatalf("feed consumed %d of %d (ended %v)", n, step, d.ended())
		}
		consumed += n
	}
	return out, consumed
}

// checkUnstuffed checks the parser in unstuff mode (Conn.Message): it
// consumes exactly what go-smtp mode does and emits the strict message of
// a clean stream. And when the session stops reading after some chunks
// and go-smtp drains the rest (muted), go-smtp's reader, starting at a
// line start, is given only the end marker, at the strict end.
func checkUnstuffed(t *testing.T, in, sizes []byte) {
	msg, end, clean := strictReference(in)
	var d dataParser
	out, consumed := feedChunks(t, &d, in, sizes, 0, func(int) { d.unstuff = true })
	if end >= 0 {
		if !d.ended() || consumed != end {
			t.Fatalf("unstuff in %q: consumed %d (ended %v), want strict end %d", in, consumed, d.ended(), end)
		}
		if clean && (d.violation != "" || !bytes.Equal(RestoreBareCR(bytes.Clone(out)), msg)) {
			t.Fatalf("unstuff clean in %q: out %q violation %q; want %q", in, out, d.violation, msg)
		}
		if !clean && d.violation == "" {
			t.Fatalf("unstuff unclean in %q: no violation", in)
		}
	} else if d.ended() || consumed != len(in) {
		t.Fatalf("unstuff in %q without end marker: ended %v consumed %d", in, d.ended(), consumed)
	}

	stop := 1
	if len(sizes) > 0 {
		stop = 1 + int(sizes[0]%4)
	}
	var m dataParser
	switched := false
	drained, consumed := feedChunks(t, &m, in, sizes, stop, func(k int) {
		m.unstuff = k < stop
		if k == stop {
			m.mute()
			switched = true
		}
	})
	if !switched {
		return // the stream ended before the switch
	}
	if end >= 0 {
		if consumed != end || string(drained) != endMarker {
			t.Fatalf("mixed in %q: consumed %d, go-smtp given %q; want %d and only %q", in, consumed, drained, end, endMarker)
		}
		if _, n, eof := goSMTPReader(drained); !eof || n != len(drained) {
			t.Fatalf("mixed in %q: go-smtp's reader does not end exactly on %q", in, drained)
		}
	} else if len(drained) != 0 {
		t.Fatalf("mixed in %q without end: go-smtp given %q", in, drained)
	}
}
