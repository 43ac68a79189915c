package classify

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"testing"
)

// tailData returns margins z on a grid with spam and ham in proportion to
// a true log-odds lo(z), as weighted copies (a mail per 1% of share).
func tailData(lo func(z float64) float64) ([][]float64, []float64) {
	var xs [][]float64
	var ys []float64
	for z := -6.0; z <= 6; z += 0.25 {
		q := 1 / (1 + math.Exp(-lo(z)))
		ns := int(math.Round(100 * q))
		for i := range 100 {
			y := 0.0
			if i < ns {
				y = 1
			}
			xs, ys = append(xs, tailBasis(z)), append(ys, y)
		}
	}
	return xs, ys
}

func TestTailCalibration(t *testing.T) {
	for _, c := range []struct {
		name   string
		lo     func(z float64) float64
		bentLo float64 // lower bound of the fitted c
		bentHi float64 // upper bound of the fitted c
	}{
		{"straight", func(z float64) float64 { return z }, 0, 0.15}, // not 0: shares rounded to 1%
		{"bent upwards", func(z float64) float64 { return z + 0.5*max(z, 0)*max(z, 0) }, 3, 7},
	} {
		xs, ys := tailData(c.lo)
		tc := identityTail()
		if !newton(xs, ys, tc[:], []float64{tailRidge, tailRidge, tailRidge}, tailIters) {
			t.Fatalf("%s: newton failed", c.name)
		}
		if !tc.monotone() || tc[2] < c.bentLo || tc[2] > c.bentHi {
			t.Errorf("%s: fitted tail %v, want monotone with c in [%v, %v]", c.name, tc, c.bentLo, c.bentHi)
		}
	}
}

func TestTailMonotone(t *testing.T) {
	for _, c := range []struct {
		tail tailCalibration
		want bool
	}{
		{identityTail(), true},
		{tailCalibration{-0.2, 0.9, 1.3}, true},
		{tailCalibration{0, 0, 1}, false},
		{tailCalibration{0, 1, -0.1}, false},
		{tailCalibration{math.NaN(), 1, 0}, false},
		{tailCalibration{0, 1, math.Inf(1)}, false},
	} {
		if got := c.tail.monotone(); got != c.want {
			t.Errorf("%v.monotone() = %v, want %v", c.tail, got, c.want)
		}
	}
	// A trained model's probability never falls as its margin rises.
	m := Train(trainSet())
	prev := -1.0
	for z := -30.0; z <= 30; z += 0.5 {
		p := 1 / (1 + math.Exp(-m.mu.stack.tail.apply(z)))
		if p < prev {
			t.Fatalf("calibrated p(%v) = %v < p(%v) = %v", z, p, z-0.5, prev)
		}
		prev = p
	}
}

// TestUnmarshalBadTail: a blob whose calibration would reorder mails is
// refused even with a valid checksum.
func TestUnmarshalBadTail(t *testing.T) {
	blob, _ := Train(trainSet()).MarshalBinary()
	bad := slices.Clone(blob[:len(blob)-4])
	binary.BigEndian.PutUint64(bad[len(bad)-8:], math.Float64bits(-1)) // c, the last weight
	bad = binary.BigEndian.AppendUint32(bad, crc32.Checksum(bad, castagnoli))
	if err := New().UnmarshalBinary(bad); !errors.Is(err, ErrBadModel) {
		t.Fatalf("negative tail weight: err = %v, want ErrBadModel", err)
	}
}

// TestHeaderTokens: the header view keeps what the sender's header fields
// say and nothing of the body.
func TestHeaderTokens(t *testing.T) {
	got := headerTokens(Tokens([]byte(spamMail)))
	for _, want := range []string{"s:viagra", "s:#caps", "f:deals", "fd:cheap-pills.biz"} {
		if !slices.Contains(got, want) {
			t.Errorf("headerTokens lacks %q; got %q", want, got)
		}
	}
	for _, tok := range got {
		if !isHeader(tok) || tok == "viagra" || strings.HasPrefix(tok, pTag) || strings.HasPrefix(tok, pURL) {
			t.Errorf("headerTokens has %q", tok)
		}
	}
}
