package guard

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
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
	// span, for a DirClient record whose Data is a redaction mark (see
	// redactClient), is the number of kept client bytes the mark stands
	// for; 0 for any other record, whose Data stands for itself.
	span int64
	// apos is 1 + the offset of Data in its capture's arena, 0 if Data
	// is not there (see capture.buf).
	apos int
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
//
// The kept bytes of every record are copied into one arena, buf, which
// comes from a pool and goes back to it once the capture is encoded for
// good (release): a fresh copy per record was a third of what smtpd
// allocated per mail under smtp-source (one mail per connection; the
// DATA bytes are captured until the mail is stored, then replaced by a
// reference). Records' Data slices alias the arena. When buf grows,
// append moves it, but offsets stay valid: the old array keeps the
// older records' bytes, which are the same.
type capture struct {
	max    int // budget in bytes (data plus recordOverhead per record)
	used   int
	recs   []Record
	spare  []Record // replaceClient's next output, reused
	client int64    // client bytes seen (kept and elided)
	buf    []byte   // the arena (see capture); nil until the first kept byte
	mem    *captureMem
	done   bool // released: nothing more is recorded
}

// captureMem is the reusable memory of one capture.
type captureMem struct {
	buf         []byte
	recs, spare []Record
}

// captureMems holds the memory of finished captures. An arena larger
// than captureArenaKeep (a connection that sent much more than one
// mail's commands and data) is left to the garbage collector.
var captureMems = sync.Pool{New: func() any {
	return &captureMem{buf: make([]byte, 0, 16<<10), recs: make([]Record, 0, 16), spare: make([]Record, 0, 16)}
}}

const captureArenaKeep = 256 << 10

// keep copies p into the arena and returns its copy and apos.
func (c *capture) keep(p []byte) ([]byte, int) {
	if len(p) == 0 {
		return nil, 0
	}
	if c.mem == nil {
		c.mem = captureMems.Get().(*captureMem)
		c.buf, c.recs, c.spare = c.mem.buf[:0], append(c.mem.recs[:0], c.recs...), c.mem.spare[:0]
	}
	start := len(c.buf)
	c.buf = append(c.buf, p...)
	return c.buf[start:len(c.buf):len(c.buf)], start + 1
}

// release gives the capture's memory back for another connection; the
// records must not be used after, and nothing more is recorded.
func (c *capture) release() {
	c.done = true
	if c.mem == nil {
		c.recs = nil
		return
	}
	clear(c.recs) // no pooled slice may keep an old arena alive
	clear(c.spare)
	m := c.mem
	m.buf, m.recs, m.spare = c.buf[:0], c.recs[:0], c.spare[:0]
	c.mem, c.buf, c.recs, c.spare = nil, nil, nil, nil
	if cap(m.buf) <= captureArenaKeep {
		captureMems.Put(m)
	}
}

// add records a chunk. The data is copied.
func (c *capture) add(dir byte, at time.Duration, p []byte) {
	if c.max < 0 || c.done {
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
	data, apos := c.keep(p[:keep])
	c.recs = append(c.recs, Record{
		Dir:    dir,
		At:     at,
		Data:   data,
		Elided: int64(len(p) - keep),
		off:    off,
		apos:   apos,
	})
}

// replaceClient replaces the client bytes [from, to) of the stream — kept
// or elided, across records — by one DirMail record holding ref, and gives
// their room back to the budget.
func (c *capture) replaceClient(from, to int64, ref []byte) {
	if c.max < 0 || c.done {
		return
	}
	out := c.spare[:0]
	inserted, mailAt := false, -1
	mail := func(at time.Duration) {
		mailAt = len(out)
		out = append(out, Record{Dir: DirMail, At: at})
		inserted = true
	}
	for _, r := range c.recs {
		lo := r.off
		hi := r.end()
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
			out = append(out, r.rest(to))
		}
	}
	if !inserted {
		at := time.Duration(0)
		if n := len(c.recs); n > 0 {
			at = c.recs[n-1].At
		}
		mail(at)
	}
	clear(c.recs) // the old records, now spare: no stale arena slices
	c.recs, c.spare = out, c.recs[:0]
	c.used = 0
	for _, r := range c.recs {
		c.used += recordOverhead + len(r.Data)
	}
	c.trimArena()
	data, apos := c.keep(ref) // may move c.recs into pooled memory
	c.recs[mailAt].Data, c.recs[mailAt].apos = data, apos
}

// trimArena drops the arena's tail that no record uses any more (the
// replaced DATA bytes, usually), and copies the records' bytes into a
// fresh arena when most of it is dead (the data of earlier mails of a
// long connection, followed by bytes still in use), so that a capture's
// memory stays within a small multiple of its budget.
func (c *capture) trimArena() {
	end, live := 0, 0
	for _, r := range c.recs {
		if r.apos > 0 {
			end = max(end, r.apos-1+len(r.Data))
			live += len(r.Data)
		}
	}
	c.buf = c.buf[:end]
	if end <= 2*live+64<<10 {
		return
	}
	buf := make([]byte, 0, 2*live)
	for i := range c.recs {
		if r := &c.recs[i]; r.apos > 0 {
			start := len(buf)
			buf = append(buf, r.Data...)
			r.Data, r.apos = buf[start:len(buf):len(buf)], start+1
		}
	}
	c.buf = buf
}

// redactClient replaces the kept client bytes [from, to) of the stream,
// across records, by one DirClient record holding mark, so that a secret
// the client sent is not kept. The mark's record stands for the bytes it
// replaced (span), so the offsets of later records stay valid. The range
// lies within one command line: it never overlaps a DATA stream that
// replaceClient cuts out, nor another redaction.
func (c *capture) redactClient(from, to int64, mark []byte) {
	if c.max < 0 || c.done || from >= to {
		return
	}
	var kept, elided int64
	for _, r := range c.recs {
		if r.Dir != DirClient || r.end() <= from || r.off >= to {
			continue
		}
		k := min(r.off+r.keptLen(), to) - max(r.off, from)
		kept += max(k, 0)
	}
	if kept == 0 {
		return // nothing of it is kept
	}
	elided = to - from - kept
	out := c.spare[:0]
	markAt := -1
	for _, r := range c.recs {
		lo, hi := r.off, r.end()
		if r.Dir != DirClient || hi <= from || lo >= to {
			out = append(out, r)
			continue
		}
		if a, b := max(lo, from)-lo, min(lo+int64(len(r.Data)), to)-lo; a < b {
			clear(r.Data[a:b]) // the arena goes back to a pool
		}
		if lo < from {
			out = append(out, r.slice(from))
		}
		if markAt < 0 {
			markAt = len(out)
			out = append(out, Record{Dir: DirClient, At: r.At, Elided: elided, off: from, span: kept})
		}
		if hi > to {
			out = append(out, r.rest(to))
		}
	}
	clear(c.recs)
	c.recs, c.spare = out, c.recs[:0]
	c.used = 0
	for _, r := range c.recs {
		c.used += recordOverhead + len(r.Data)
	}
	data, apos := c.keep(mark) // may move c.recs into pooled memory
	c.recs[markAt].Data, c.recs[markAt].apos = data, apos
	c.used += len(data)
}

// keptLen is how many client stream bytes a record's Data stands for.
func (r Record) keptLen() int64 {
	if r.span > 0 {
		return r.span
	}
	return int64(len(r.Data))
}

// end is the client stream offset just after a DirClient record.
func (r Record) end() int64 { return r.off + r.keptLen() + r.Elided }

// rest returns the part of a client record from stream offset to on,
// which lies inside it.
func (r Record) rest(to int64) Record {
	lo := r.off
	out := r
	out.Data, out.Elided, out.off, out.apos = nil, 0, to, 0
	if kept := lo + r.keptLen(); to < kept {
		out.Data = r.Data[to-lo:]
		out.Elided = r.Elided
		out.apos = r.apos + int(to-lo)
	} else {
		out.Elided = r.end() - to
	}
	return out
}

// slice returns the part of a client record before stream offset end.
func (r Record) slice(end int64) Record {
	out := r
	if kept := r.off + r.keptLen(); end <= kept {
		out.Data = r.Data[: end-r.off : end-r.off]
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
func encodeCapture(recs []Record) []byte { return appendCapture(nil, recs) }

// appendCapture appends the encoding of recs (see encodeCapture) to b.
func appendCapture(b []byte, recs []Record) []byte {
	size := len(captureMagic)
	for _, r := range recs {
		size += len(r.Data) + 32
	}
	b = slices.Grow(b, size)
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
