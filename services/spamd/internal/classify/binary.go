package classify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
)

// Binary layout of a model (MarshalBinary), all integers unsigned varints:
//
//	magic   "TMXC" (4 bytes)
//	version 8 (1 byte)
//	nham, nspam, ntokens
//	ntokens × { shared, suffixLen, suffix bytes, ham, spam }
//	lrBits, bias (float32 bits, 4 bytes big endian), nweights
//	nweights × { index delta, weight (float32 bits, 4 bytes big endian) }
//	the shape regression in the same form (lrBits, bias, nweights, weights)
//	stacked 0 or 1 (1 byte), then if 1: nStack weights and the nTail
//	  weights of the tail calibration (float64 bits, 8 bytes big endian)
//	crc32   Castagnoli of everything before it (4 bytes, big endian)
//
// Tokens are in strictly increasing byte order and front-coded: shared is
// the length of the prefix a token shares with the one before it. The
// order makes the bytes a function of the counts alone (the same training
// set gives identical bytes), and the front coding roughly halves the size
// because tokens sharing prefixes ("s:", "url:") sort together. The
// regression's weights are stored sparsely (non-zero ones only, by
// increasing index, delta-coded).
const (
	magic = "TMXC"
	// formatVersion 2 added the stacker, version 3 the shape regression
	// (and a stacker input for it), version 4 the structure tokens
	// (structure.go) and the squared-evidence stacker input, version 5 the
	// squared shape-margin stacker input, version 6 the stacker's tail
	// calibration (and averaged regressions), version 7 the shape-token
	// and version 8 the header-token chi-square stacker input. Older blobs
	// (tokens of an older tokenizer, fewer stacker inputs, no calibration)
	// are refused: retrain.
	formatVersion = 8
	maxTokenLen   = 1 << 10
)

// ErrBadModel reports a model blob that is not one MarshalBinary wrote
// (truncated, corrupted or of an unknown version).
var ErrBadModel = errors.New("classify: bad model data")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes the model in the versioned layout above.
func (m *Model) MarshalBinary() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	toks := make([]string, 0, len(m.mu.tokens))
	for tok := range m.mu.tokens {
		toks = append(toks, tok)
	}
	slices.Sort(toks)
	b := make([]byte, 0, 16+len(toks)*12)
	b = append(b, magic...)
	b = append(b, formatVersion)
	b = binary.AppendUvarint(b, uint64(m.mu.nham))
	b = binary.AppendUvarint(b, uint64(m.mu.nspam))
	b = binary.AppendUvarint(b, uint64(len(toks)))
	prev := ""
	for _, tok := range toks {
		shared := commonPrefix(prev, tok)
		n := m.mu.tokens[tok]
		b = binary.AppendUvarint(b, uint64(shared))
		b = binary.AppendUvarint(b, uint64(len(tok)-shared))
		b = append(b, tok[shared:]...)
		b = binary.AppendUvarint(b, uint64(n.ham))
		b = binary.AppendUvarint(b, uint64(n.spam))
		prev = tok
	}
	b = m.mu.lr.append(b)
	b = m.mu.shape.append(b)
	b = m.mu.stack.append(b)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBinary replaces the model's contents with the decoded data. On
// error the model is left unchanged. It checks everything a corrupt blob
// could break: checksum, bounds, token order, counts within class totals.
func (m *Model) UnmarshalBinary(data []byte) error {
	if len(data) < len(magic)+1+4 || string(data[:len(magic)]) != magic {
		return fmt.Errorf("%w: no model header", ErrBadModel)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrBadModel)
	}
	if v := body[len(magic)]; v != formatVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadModel, v, formatVersion)
	}
	d := decoder{b: body[len(magic)+1:]}
	nham, nspam, ntok := d.uvarint(), d.uvarint(), d.uvarint()
	if d.err != nil || nham > 1<<32-1 || nspam > 1<<32-1 || ntok > uint64(len(d.b)) {
		return fmt.Errorf("%w: bad totals", ErrBadModel)
	}
	tokens := make(map[string]counts, ntok)
	var prev []byte
	for i := uint64(0); i < ntok; i++ {
		shared, n := d.uvarint(), d.uvarint()
		if d.err != nil || shared > uint64(len(prev)) || n > maxTokenLen || shared+n > maxTokenLen || n > uint64(len(d.b)) {
			return fmt.Errorf("%w: token %d: bad length", ErrBadModel, i)
		}
		tok := append(prev[:shared:shared], d.b[:n]...)
		d.b = d.b[n:]
		ham, spam := d.uvarint(), d.uvarint()
		if d.err != nil || ham > nham || spam > nspam || ham+spam == 0 {
			return fmt.Errorf("%w: token %d: bad counts", ErrBadModel, i)
		}
		if i > 0 && strings.Compare(string(prev), string(tok)) >= 0 {
			return fmt.Errorf("%w: token %d out of order", ErrBadModel, i)
		}
		tokens[string(tok)] = counts{ham: uint32(ham), spam: uint32(spam)}
		prev = tok
	}
	lr, err := d.logistic()
	if err != nil {
		return err
	}
	shape, err := d.logistic()
	if err != nil {
		return err
	}
	st, err := d.stacker()
	if err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadModel, len(d.b))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.nham, m.mu.nspam, m.mu.tokens, m.mu.lr, m.mu.shape, m.mu.stack = uint32(nham), uint32(nspam), tokens, lr, shape, st
	return nil
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// decoder reads uvarints, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrBadModel
		return 0
	}
	d.b = d.b[n:]
	return v
}

// append encodes the regression's weights.
func (l *logistic) append(b []byte) []byte {
	b = binary.AppendUvarint(b, lrBits)
	b = binary.BigEndian.AppendUint32(b, math.Float32bits(l.bias))
	n := 0
	for _, w := range l.w {
		if w != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	last := -1
	for i, w := range l.w {
		if w != 0 {
			b = binary.AppendUvarint(b, uint64(i-last))
			b = binary.BigEndian.AppendUint32(b, math.Float32bits(w))
			last = i
		}
	}
	return b
}

// logistic decodes the regression's weights.
func (d *decoder) logistic() (logistic, error) {
	bits := d.uvarint()
	if d.err != nil || bits != lrBits || len(d.b) < 4 {
		return logistic{}, fmt.Errorf("%w: bad regression header", ErrBadModel)
	}
	var l logistic
	l.bias = math.Float32frombits(binary.BigEndian.Uint32(d.b))
	d.b = d.b[4:]
	n := d.uvarint()
	if d.err != nil || n > lrDim || n*5 > uint64(len(d.b)) {
		return logistic{}, fmt.Errorf("%w: bad weight count", ErrBadModel)
	}
	if !finite(l.bias) {
		return logistic{}, fmt.Errorf("%w: bias not finite", ErrBadModel)
	}
	if n > 0 {
		l.w = make([]float32, lrDim)
	}
	idx := -1
	for range n {
		delta := d.uvarint()
		if d.err != nil || delta == 0 || delta > lrDim || len(d.b) < 4 {
			return logistic{}, fmt.Errorf("%w: bad weight index", ErrBadModel)
		}
		idx += int(delta)
		if idx >= lrDim {
			return logistic{}, fmt.Errorf("%w: bad weight index", ErrBadModel)
		}
		w := math.Float32frombits(binary.BigEndian.Uint32(d.b))
		d.b = d.b[4:]
		if w == 0 || !finite(w) {
			return logistic{}, fmt.Errorf("%w: bad weight", ErrBadModel)
		}
		l.w[idx] = w
	}
	return l, nil
}

func finite(f float32) bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// append encodes the stacker.
func (s *stacker) append(b []byte) []byte {
	if !s.fitted {
		return append(b, 0)
	}
	b = append(b, 1)
	for _, w := range s.w {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(w))
	}
	for _, w := range s.tail {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(w))
	}
	return b
}

// stacker decodes the stacker.
func (d *decoder) stacker() (stacker, error) {
	if len(d.b) < 1 || d.b[0] > 1 {
		return stacker{}, fmt.Errorf("%w: bad stacker flag", ErrBadModel)
	}
	fitted := d.b[0] == 1
	d.b = d.b[1:]
	if !fitted {
		return stacker{}, nil
	}
	if len(d.b) < 8*(nStack+nTail) {
		return stacker{}, fmt.Errorf("%w: short stacker", ErrBadModel)
	}
	s := stacker{fitted: true}
	for i := range s.w {
		w := math.Float64frombits(binary.BigEndian.Uint64(d.b))
		d.b = d.b[8:]
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return stacker{}, fmt.Errorf("%w: stacker weight not finite", ErrBadModel)
		}
		s.w[i] = w
	}
	for i := range s.tail {
		s.tail[i] = math.Float64frombits(binary.BigEndian.Uint64(d.b))
		d.b = d.b[8:]
	}
	if !s.tail.monotone() {
		return stacker{}, fmt.Errorf("%w: stacker calibration not finite or not monotone", ErrBadModel)
	}
	return s, nil
}
