package guard

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Record is one chunk of a captured transcript.
type Record struct {
	// Dir is DirClient for bytes the client sent, DirServer for bytes the
	// server wrote, DirTLS for the point where the STARTTLS handshake
	// completed (Data is empty; later records are TLS plaintext).
	Dir byte
	// At is the time since the connection was accepted, in milliseconds
	// precision.
	At time.Duration
	// Data is the kept part of the chunk.
	Data []byte
	// Elided counts bytes of this chunk (or of consecutive chunks in the
	// same direction) that were sent but not kept because the capture was
	// full.
	Elided int64

	off int64 // DirClient: offset of the record's first byte in the client stream
}

// Record directions.
const (
	DirClient byte = 'C'
	DirServer byte = 'S'
	DirTLS    byte = 'T'
	// DirMail stands for the client's bytes of one DATA stream whose
	// message was stored: Data is the session's reference to it (see
	// Conn.DataStored), not the bytes.
	DirMail byte = 'M'
)

// captureMagic starts every encoded capture; the version is in it.
const captureMagic = "twinmx-capture/1\n"

// recordOverhead approximates the bytes a record costs besides its data, so
// that many tiny chunks cannot grow the capture without bound.
const recordOverhead = 32

// ErrBadCapture is returned by ParseCapture for malformed input.
var ErrBadCapture = errors.New("guard: bad capture")

// capture accumulates records up to a byte budget. It is not safe for
// concurrent use; Conn guards it with its mutex.
type capture struct {
	max    int // budget in bytes (data plus recordOverhead per record)
	used   int
	recs   []Record
	client int64 // client bytes seen (kept and elided)
}

// add records a chunk. The data is copied.
func (c *capture) add(dir byte, at time.Duration, p []byte) {
	if c.max < 0 {
		return
	}
	off := c.client
	if dir == DirClient {
		c.client += int64(len(p))
	}
	at = at.Truncate(time.Millisecond)
	room := c.max - c.used - recordOverhead
	if room <= 0 {
		// Full: count the bytes on the last record if it has the same
		// direction, so that a long body costs nothing more.
		if n := len(c.recs); n > 0 && c.recs[n-1].Dir == dir {
			c.recs[n-1].Elided += int64(len(p))
			return
		}
		if len(p) == 0 && dir != DirTLS {
			return
		}
		// One more record per direction change is allowed past the
		// budget: direction changes are bounded by MaxCommands.
		c.recs = append(c.recs, Record{Dir: dir, At: at, Elided: int64(len(p)), off: off})
		return
	}
	keep := min(len(p), room)
	c.used += recordOverhead + keep
	c.recs = append(c.recs, Record{
		Dir:    dir,
		At:     at,
		Data:   bytes.Clone(p[:keep]),
		Elided: int64(len(p) - keep),
		off:    off,
	})
}

// replaceClient replaces the client bytes [from, to) of the stream — kept
// or elided, across records — by one DirMail record holding ref, and gives
// their room back to the budget.
func (c *capture) replaceClient(from, to int64, ref []byte) {
	if c.max < 0 {
		return
	}
	var out []Record
	inserted := false
	mail := func(at time.Duration) {
		out = append(out, Record{Dir: DirMail, At: at, Data: bytes.Clone(ref)})
		inserted = true
	}
	for _, r := range c.recs {
		lo := r.off
		hi := lo + int64(len(r.Data)) + r.Elided
		if r.Dir != DirClient || hi <= from || lo >= to {
			if r.Dir == DirClient && lo >= to && !inserted {
				mail(r.At)
			}
			out = append(out, r)
			continue
		}
		if lo < from {
			out = append(out, r.slice(from))
		}
		if !inserted {
			mail(r.At)
		}
		if hi > to {
			rest := r
			rest.Data, rest.Elided, rest.off = nil, 0, to
			if kept := lo + int64(len(r.Data)); to < kept {
				rest.Data = r.Data[to-lo:]
				rest.Elided = r.Elided
			} else {
				rest.Elided = hi - to
			}
			out = append(out, rest)
		}
	}
	if !inserted {
		at := time.Duration(0)
		if n := len(c.recs); n > 0 {
			at = c.recs[n-1].At
		}
		mail(at)
	}
	c.recs = out
	c.used = 0
	for _, r := range c.recs {
		c.used += recordOverhead + len(r.Data)
	}
}

// slice returns the part of a client record before stream offset end.
func (r Record) slice(end int64) Record {
	out := r
	if kept := r.off + int64(len(r.Data)); end <= kept {
		out.Data = r.Data[:end-r.off]
		out.Elided = 0
	} else {
		out.Elided = end - kept
	}
	return out
}

// encode returns the versioned encoding of recs:
//
//	twinmx-capture/1 LF
//	then per record: DIR SP AT-MS SP LEN SP ELIDED LF DATA LF
//
// DIR is one byte ('C', 'S' or 'T'); AT-MS, LEN and ELIDED are decimal;
// DATA is LEN raw bytes. The header line keeps the format readable with a
// pager while the length prefix keeps it binary-safe.
func encodeCapture(recs []Record) []byte {
	var b []byte
	b = append(b, captureMagic...)
	for _, r := range recs {
		b = append(b, r.Dir, ' ')
		b = strconv.AppendInt(b, r.At.Milliseconds(), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(r.Data)), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.Elided, 10)
		b = append(b, '\n')
		b = append(b, r.Data...)
		b = append(b, '\n')
	}
	return b
}

// maxCaptureNumber bounds the decimal fields so that a hostile capture
// cannot overflow durations or lengths.
const maxCaptureNumber = 1 << 53

// maxCaptureAt bounds AT, in milliseconds, to what a time.Duration holds
// (about 292 years): beyond it the conversion overflows.
const maxCaptureAt = int64(math.MaxInt64 / int64(time.Millisecond))

// ParseCapture decodes a capture produced by Conn.Capture. The returned
// records' Data slices alias b.
func ParseCapture(b []byte) ([]Record, error) {
	rest, ok := bytes.CutPrefix(b, []byte(captureMagic))
	if !ok {
		return nil, fmt.Errorf("%w: missing header %q", ErrBadCapture, captureMagic[:len(captureMagic)-1])
	}
	var recs []Record
	for len(rest) > 0 {
		r, n, err := parseRecord(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrBadCapture, len(recs), err)
		}
		recs = append(recs, r)
		rest = rest[n:]
	}
	return recs, nil
}

// parseRecord decodes the record at the start of b and returns its length.
func parseRecord(b []byte) (Record, int, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return Record{}, 0, errors.New("unterminated header")
	}
	f := bytes.Split(b[:nl], []byte{' '})
	if len(f) != 4 || len(f[0]) != 1 {
		return Record{}, 0, fmt.Errorf("header %q: want DIR AT LEN ELIDED", b[:nl])
	}
	dir := f[0][0]
	if dir != DirClient && dir != DirServer && dir != DirTLS && dir != DirMail {
		return Record{}, 0, fmt.Errorf("unknown direction %q", dir)
	}
	var nums [3]int64
	for i := range nums {
		v, err := parseCaptureNumber(f[i+1])
		if err != nil {
			return Record{}, 0, err
		}
		nums[i] = v
	}
	at, n, elided := nums[0], nums[1], nums[2]
	if at > maxCaptureAt {
		return Record{}, 0, fmt.Errorf("time %d ms out of range", at)
	}
	body := b[nl+1:]
	if n >= int64(len(body)) { // the data plus its LF must fit
		return Record{}, 0, fmt.Errorf("data length %d exceeds input", n)
	}
	if body[n] != '\n' {
		return Record{}, 0, errors.New("data not followed by LF")
	}
	r := Record{Dir: dir, At: time.Duration(at) * time.Millisecond, Elided: elided}
	if n > 0 {
		r.Data = body[:n:n]
	}
	return r, nl + 1 + int(n) + 1, nil
}

// parseCaptureNumber accepts canonical non-negative decimals only, so that
// each capture has exactly one encoding.
func parseCaptureNumber(s []byte) (int64, error) {
	if len(s) == 0 || len(s) > 16 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", s)
	}
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
		v = v*10 + int64(c-'0')
	}
	if v > maxCaptureNumber {
		return 0, fmt.Errorf("number %q too large", s)
	}
	return v, nil
}
