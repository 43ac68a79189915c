// Package inflate decodes the raw DEFLATE stream (RFC 1951) an IMAP client
// sends once COMPRESS=DEFLATE is active (RFC 4978), handing out each byte
// as soon as it is decoded and no more input is waiting.
//
// Go's own inflaters (compress/flate, klauspost's) give out decoded bytes
// only at a stored block or when their 32 KiB window is full. A client
// that ends each command with zlib's Z_SYNC_FLUSH ends it with an empty
// stored block, so that works; one that uses Z_PARTIAL_FLUSH (mbsync)
// ends it with an empty fixed block, and its command waits in the
// inflater until the session times out. This decoder writes out what it
// has whenever it would have to wait for the network.
//
// It decodes a code bit by bit from the counts of each code length (the
// canonical Huffman code of RFC 1951 §3.2.2): simple and slow, about
// the speed of a client's link; clients send commands and the mails they
// APPEND, never much.
package inflate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// NewReader returns the decoded stream read from r. A goroutine decodes
// until r fails, the stream is corrupt or ends with a final block, or the
// returned reader is closed; Close ends it (once r's pending Read returns).
func NewReader(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		d := &decoder{in: bufio.NewReaderSize(r, 4096), out: pw}
		pw.CloseWithError(d.run())
	}()
	return pr
}

// ErrCorrupt marks a stream that is not valid DEFLATE.
var ErrCorrupt = errors.New("inflate: corrupt deflate stream")

const (
	windowSize = 1 << 15 // the farthest a match may reach back (RFC 1951 §2)
	flushAt    = 32 << 10
)

type decoder struct {
	in  *bufio.Reader
	out io.Writer

	bits  uint32 // bits not yet used, the next one lowest
	nbits uint

	window  [windowSize]byte
	wpos    int   // next position in window
	written int64 // bytes decoded so far (a match must not reach before them)
	pending []byte

	lit, dist huffman // the current block's codes
}

// run decodes blocks until an error, which it returns (io.EOF after a
// final block).
func (d *decoder) run() error {
	for {
		hdr, err := d.getBits(3) // BFINAL, then BTYPE
		if err != nil {
			return err
		}
		final, kind := hdr&1, hdr>>1
		switch kind {
		case 0:
			err = d.stored()
		case 1:
			fixedCodes(&d.lit, &d.dist)
			err = d.codes()
		case 2:
			if err = d.dynamicCodes(); err == nil {
				err = d.codes()
			}
		default:
			err = fmt.Errorf("%w: block type 3", ErrCorrupt)
		}
		if err != nil {
			return err
		}
		if final == 1 {
			if err := d.flush(); err != nil {
				return err
			}
			return io.EOF
		}
	}
}

// byte returns the next input byte. Before it waits for the network, it
// writes out what was decoded: this is what makes a command sent with a
// partial flush arrive.
func (d *decoder) byte() (byte, error) {
	if d.in.Buffered() == 0 && len(d.pending) > 0 {
		if err := d.flush(); err != nil {
			return 0, err
		}
	}
	b, err := d.in.ReadByte()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // io.EOF is the end after a final block
	}
	if err != nil {
		return 0, fmt.Errorf("inflate: read: %w", err)
	}
	return b, nil
}

func (d *decoder) flush() error {
	if len(d.pending) == 0 {
		return nil
	}
	_, err := d.out.Write(d.pending)
	d.pending = d.pending[:0]
	return err
}

// getBits returns the next n (at most 24) bits, the first one lowest.
func (d *decoder) getBits(n uint) (uint32, error) {
	for d.nbits < n {
		b, err := d.byte()
		if err != nil {
			return 0, err
		}
		d.bits |= uint32(b) << d.nbits
		d.nbits += 8
	}
	v := d.bits & (1<<n - 1)
	d.bits >>= n
	d.nbits -= n
	return v, nil
}

// emit appends one decoded byte.
func (d *decoder) emit(b byte) error {
	d.window[d.wpos] = b
	d.wpos = (d.wpos + 1) % windowSize
	d.written++
	d.pending = append(d.pending, b)
	if len(d.pending) >= flushAt {
		return d.flush()
	}
	return nil
}

// stored copies a stored block (RFC 1951 §3.2.4).
func (d *decoder) stored() error {
	d.bits, d.nbits = 0, 0 // the rest of the byte is padding
	var hdr [4]byte
	for i := range hdr {
		b, err := d.byte()
		if err != nil {
			return err
		}
		hdr[i] = b
	}
	n := uint16(hdr[0]) | uint16(hdr[1])<<8
	if nc := uint16(hdr[2]) | uint16(hdr[3])<<8; n != ^nc {
		return fmt.Errorf("%w: stored length %d does not match its complement", ErrCorrupt, n)
	}
	for range n {
		b, err := d.byte()
		if err != nil {
			return err
		}
		if err := d.emit(b); err != nil {
			return err
		}
	}
	return nil
}

// The lengths and distances of RFC 1951 §3.2.5: base values and extra bits
// of the length symbols 257-285 and of the distance symbols 0-29.
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// codes decodes a compressed block's symbols up to its end code.
func (d *decoder) codes() error {
	for {
		sym, err := d.decode(&d.lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			if err := d.emit(byte(sym)); err != nil {
				return err
			}
			continue
		case sym == 256:
			return nil
		case sym > 285:
			return fmt.Errorf("%w: length symbol %d", ErrCorrupt, sym)
		}
		sym -= 257
		extra, err := d.getBits(uint(lengthExtra[sym]))
		if err != nil {
			return err
		}
		length := int(lengthBase[sym]) + int(extra)
		dsym, err := d.decode(&d.dist)
		if err != nil {
			return err
		}
		if dsym > 29 {
			return fmt.Errorf("%w: distance symbol %d", ErrCorrupt, dsym)
		}
		extra, err = d.getBits(uint(distExtra[dsym]))
		if err != nil {
			return err
		}
		dist := int(distBase[dsym]) + int(extra)
		if int64(dist) > d.written {
			return fmt.Errorf("%w: distance %d before the start of the stream", ErrCorrupt, dist)
		}
		for range length {
			if err := d.emit(d.window[(d.wpos-dist+windowSize)%windowSize]); err != nil {
				return err
			}
		}
	}
}

// huffman is a canonical code: how many codes have each length, and the
// symbols in code order.
type huffman struct {
	count  [16]uint16
	symbol [288]uint16
}

// build makes h from the code length of each symbol (0: unused). An
// over-subscribed set of lengths is corrupt; an incomplete one is taken,
// and decoding a code it lacks is corrupt.
func (h *huffman) build(lengths []uint8) error {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return fmt.Errorf("%w: over-subscribed code lengths", ErrCorrupt)
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return nil
}

// decode reads one symbol of h, a bit at a time: the codes of each length
// are consecutive numbers after those of the shorter lengths, doubled.
func (d *decoder) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		bit, err := d.getBits(1)
		if err != nil {
			return 0, err
		}
		code |= int(bit)
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, fmt.Errorf("%w: a code not in the block's table", ErrCorrupt)
}

// fixedCodes sets the codes of a fixed block (RFC 1951 §3.2.6).
func fixedCodes(lit, dist *huffman) {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	lit.build(l[:])  // complete: cannot fail
	var dl [32]uint8 // 30 and 31 are codes but no distances: corrupt when read
	for i := range dl {
		dl[i] = 5
	}
	dist.build(dl[:])
}

// clOrder is the order of the code length code's lengths (RFC 1951 §3.2.7).
var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// dynamicCodes reads a dynamic block's codes (RFC 1951 §3.2.7).
func (d *decoder) dynamicCodes() error {
	hdr, err := d.getBits(14) // HLIT (5 bits), HDIST (5), HCLEN (4)
	if err != nil {
		return err
	}
	hclen := hdr >> 10
	nlit, ndist := int(hdr&31)+257, int(hdr>>5&31)+1
	if nlit > 286 || ndist > 30 {
		return fmt.Errorf("%w: %d literal/length and %d distance codes", ErrCorrupt, nlit, ndist)
	}
	var cl [19]uint8
	for i := range int(hclen) + 4 {
		v, err := d.getBits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(v)
	}
	var clCode huffman
	if err := clCode.build(cl[:]); err != nil {
		return err
	}
	var lengths [286 + 30]uint8
	for i := 0; i < nlit+ndist; {
		sym, err := d.decode(&clCode)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var repeat uint32
		var value uint8
		switch sym {
		case 16:
			if i == 0 {
				return fmt.Errorf("%w: repeat with no length before it", ErrCorrupt)
			}
			value = lengths[i-1]
			repeat, err = d.getBits(2)
			repeat += 3
		case 17:
			repeat, err = d.getBits(3)
			repeat += 3
		default:
			repeat, err = d.getBits(7)
			repeat += 11
		}
		if err != nil {
			return err
		}
		if i+int(repeat) > nlit+ndist {
			return fmt.Errorf("%w: code lengths run past their count", ErrCorrupt)
		}
		for range repeat {
			lengths[i] = value
			i++
		}
	}
	if lengths[256] == 0 {
		return fmt.Errorf("%w: no end-of-block code", ErrCorrupt)
	}
	if err := d.lit.build(lengths[:nlit]); err != nil {
		return err
	}
	return d.dist.build(lengths[nlit : nlit+ndist])
}
