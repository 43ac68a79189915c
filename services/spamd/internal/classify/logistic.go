package classify

import (
	"math"
	"math/rand/v2"
)

// The second judge: logistic regression over hashed tokens. Chi-square
// combining of token ratios (model.go) treats tokens as independent
// evidence; logistic regression learns weights for tokens jointly, so
// evidence that always comes together (HTML layout, a sender's footer) is
// counted once. Its errors are different ones, and the model's
// probability is the less confident of the two (combine), so a mail is
// "sure spam" only when both say so.

const (
	// lrBits is log2 of the hashed weight table size. 2^18 weights keep
	// collisions rare for the ~400k distinct tokens of a large training
	// set (most of them rare, and their collisions harmless) at 1 MiB.
	lrBits = 18
	lrDim  = 1 << lrBits
	// lrRate is the SGD step size. Feature vectors are L2-normalised, so
	// one step moves a mail's margin by up to lrRate. Smaller steps left
	// the model too timid to ever be sure (few mails above p = 0.99).
	lrRate = 8
	// lrEpochs is how many passes Train makes over the training set.
	lrEpochs = 12
	// lrDecay shrinks all weights once per epoch (L2 regularisation in its
	// simplest form): weights that no mail keeps re-confirming fade.
	lrDecay = 0.999
	// lrSeed fixes the shuffle of the training order: the same training
	// set gives the same weights, bit for bit.
	lrSeed = 0x7477696e6d78 // "twinmx"
)

// logistic is a hashed logistic regression. Not safe for concurrent use;
// Model's lock guards it.
type logistic struct {
	w    []float32 // lrDim weights, nil until first trained
	bias float32
}

// fnv1a hashes a token to its weight index.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// margin returns the linear score of a token set.
func (l *logistic) margin(toks []string) float64 {
	if l.w == nil || len(toks) == 0 {
		return 0
	}
	x := 1 / math.Sqrt(float64(len(toks)))
	var z float64
	for _, tok := range toks {
		z += float64(l.w[fnv1a(tok)&(lrDim-1)])
	}
	return z*x + float64(l.bias)
}

// prob returns P(spam) for a token set; 0.5 for an untrained model.
func (l *logistic) prob(toks []string) float64 {
	if l.w == nil {
		return 0.5
	}
	return 1 / (1 + math.Exp(-l.margin(toks)))
}

// step is one SGD update towards label y (1 spam, 0 ham) with weight
// rate; a negative rate moves away from y (Unlearn).
func (l *logistic) step(toks []string, y float64, rate float64) {
	if len(toks) == 0 {
		return
	}
	if l.w == nil {
		l.w = make([]float32, lrDim)
	}
	p := 1 / (1 + math.Exp(-l.margin(toks)))
	g := rate * (y - p)
	x := 1 / math.Sqrt(float64(len(toks)))
	for _, tok := range toks {
		i := fnv1a(tok) & (lrDim - 1)
		l.w[i] += float32(g * x)
	}
	l.bias += float32(g * 0.1)
}

// fit trains from scratch on docs with lrEpochs passes of SGD in a
// deterministic shuffled order.
func (l *logistic) fit(docs []Doc) {
	l.w, l.bias = make([]float32, lrDim), 0
	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(lrSeed, uint64(len(docs))))
	for e := range lrEpochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		// A falling step size settles the weights instead of letting the
		// last mails seen dominate.
		rate := lrRate / (1 + float64(e)/2)
		for _, i := range order {
			d := docs[i]
			y := 0.0
			if d.Class == Spam {
				y = 1
			}
			l.step(d.Tokens, y, rate)
		}
		for i := range l.w {
			l.w[i] *= lrDecay
		}
	}
}

// combine merges the two judges' probabilities: the result is the less
// confident of the two when they agree on the side, and their mean (near
// 0.5, unsure) when they disagree. So a mail is only as sure spam as the
// less sure judge says, which is what a reject-only-when-sure policy needs.
func combine(a, b float64) float64 {
	switch {
	case a >= 0.5 && b >= 0.5:
		return min(a, b)
	case a < 0.5 && b < 0.5:
		return max(a, b)
	default:
		return (a + b) / 2
	}
}
