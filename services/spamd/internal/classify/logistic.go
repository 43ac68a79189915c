package classify

import (
	"math"
	"math/rand/v2"
	"strings"
)

// The second judge: logistic regression over hashed tokens. Chi-square
// combining of token ratios (model.go) treats tokens as independent
// evidence; logistic regression learns weights for tokens jointly, so
// evidence that always comes together (HTML layout, a sender's footer) is
// counted once. Its errors are different ones; the stacker (stack.go)
// weighs the two. A second regression of the same kind sees only the shape
// tokens (isShape): how a mail is built, not what it says.

const (
	// lrBits is log2 of the hashed weight table size. 2^18 weights keep
	// collisions rare for the ~400k distinct tokens of a large training
	// set (most of them rare, and their collisions harmless) at 1 MiB.
	lrBits = 18
	lrDim  = 1 << lrBits
	// lrRate is the step size of one feedback mail (Learn, Unlearn).
	// Feature vectors are L2-normalised, so one step moves a mail's margin
	// by up to lrRate.
	lrRate = 8
	// lrEpochs is how many passes Train makes over the training set.
	lrEpochs = 10
	// lrAdaRate is AdaGrad's base step size in fit. AdaGrad replaced plain
	// SGD with a falling rate (12 epochs, rate 8): out of fold, spam caught
	// at p >= 0.99 went from 67.6% to 70.1% (hints stripped), still with
	// no ham.
	lrAdaRate = 0.5
	// lrL2 is the L2 penalty per weight and step in fit: small, it only
	// keeps weights of tokens no mail re-confirms from drifting.
	lrL2 = 1e-5
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

// fit trains from scratch on docs: lrEpochs passes of AdaGrad (a step size
// per weight that shrinks with the gradients it has seen, so rare tokens
// still move and common ones settle) with an L2 penalty, in a
// deterministic shuffled order. The result is the mean of the weights
// after each pass (averaged SGD): a single pass ends wherever the last few
// mails of its shuffled order pulled it, and the mean smooths that out.
// Out of fold it ranks better and lowers the most spam-like ham (the
// tail calibration in stack.go needs both). The squared-gradient sums and
// the running sum are only needed while fitting and are dropped
// afterwards.
func (l *logistic) fit(docs []Doc) {
	l.w, l.bias = make([]float32, lrDim), 0
	g2 := make([]float32, lrDim)
	sum := make([]float32, lrDim)
	var gb2, sumBias float64
	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(lrSeed, uint64(len(docs))))
	idx := make([]uint32, 0, 1024)
	for range lrEpochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			d := docs[i]
			if len(d.Tokens) == 0 {
				continue
			}
			idx = idx[:0]
			for _, tok := range d.Tokens {
				idx = append(idx, fnv1a(tok)&(lrDim-1))
			}
			x := 1 / math.Sqrt(float64(len(idx)))
			var z float64
			for _, j := range idx {
				z += float64(l.w[j])
			}
			z = z*x + float64(l.bias)
			p := 1 / (1 + math.Exp(-z))
			g := p - label(d.Class)
			for _, j := range idx {
				gj := g*x + lrL2*float64(l.w[j])
				g2[j] += float32(gj * gj)
				l.w[j] -= float32(lrAdaRate * gj / math.Sqrt(float64(g2[j])+1e-8))
			}
			gb2 += g * g
			l.bias -= float32(lrAdaRate * g / math.Sqrt(gb2+1e-8))
		}
		for j, w := range l.w {
			sum[j] += w
		}
		sumBias += float64(l.bias)
	}
	for j := range l.w {
		l.w[j] = sum[j] / lrEpochs
	}
	l.bias = float32(sumBias / lrEpochs)
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

// isShape reports whether a token describes how a mail is built rather
// than what it says: structure, header shapes and layout, mailer, sender
// and link domains, markup. Words, word pairs and Subject/From-name words
// are not.
func isShape(tok string) bool {
	for _, p := range []string{pMeta, pShape, pHeaderName, pHeaderOrder, pURL, pTag, pAttr, pMailer, pFromDom, pBody} {
		if strings.HasPrefix(tok, p) {
			return true
		}
	}
	return strings.HasPrefix(tok, pSubject+"#")
}

// shapeTokens returns the shape tokens of a token set (isShape).
func shapeTokens(toks []string) []string {
	out := make([]string, 0, 64)
	for _, t := range toks {
		if isShape(t) {
			out = append(out, t)
		}
	}
	return out
}

// isHeader reports whether a token comes from the header fields that say
// how the sender presents the mail: Subject, From name and domain, mailer,
// the shapes of Message-ID and Date, and the sender-field layout.
func isHeader(tok string) bool {
	for _, p := range []string{pSubject, pFromName, pFromDom, pMailer, pShape, pHeaderName, pHeaderOrder} {
		if strings.HasPrefix(tok, p) {
			return true
		}
	}
	return false
}

// headerTokens returns the header tokens of a token set (isHeader).
func headerTokens(toks []string) []string {
	out := make([]string, 0, 32)
	for _, t := range toks {
		if isHeader(t) {
			out = append(out, t)
		}
	}
	return out
}

// shapeDocs returns docs reduced to their shape tokens.
func shapeDocs(docs []Doc) []Doc {
	out := make([]Doc, len(docs))
	for i, d := range docs {
		out[i] = Doc{Tokens: shapeTokens(d.Tokens), Class: d.Class}
	}
	return out
}
