package classify

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Class is the label of a training mail.
type Class uint8

// Classes. Ham is wanted mail, Spam is unwanted.
const (
	Ham Class = iota
	Spam
)

// String returns "ham" or "spam".
func (c Class) String() string {
	if c == Spam {
		return "spam"
	}
	return "ham"
}

// Scoring parameters (Robinson's f(w) and Fisher's chi-square combining, as
// in SpamBayes; the values are SpamBayes' defaults, which have held up on
// many corpora, not values fitted to ours).
const (
	// unknownStrength (Robinson's s) is how many mails' worth of weight the
	// prior 0.5 has against a token's own counts: rare tokens stay near 0.5.
	unknownStrength = 0.45
	unknownProb     = 0.5
	// minStrength drops tokens whose probability is within this distance of
	// 0.5: they only add noise to the combination.
	minStrength = 0.1
	// maxClues is how many of the strongest tokens are combined. A cap keeps
	// one long mail from drowning in its own words and bounds the work.
	maxClues = 150
	// maxMarkupClues and maxMetaClues cap correlated evidence (pickClues).
	maxMarkupClues = 5
	maxMetaClues   = 5
	// reasonClues is how many tokens Reason names.
	reasonClues = 4
)

// counts are the numbers of ham and spam training mails that contained a
// token (each mail counts a token once).
type counts struct{ ham, spam uint32 }

// Model is a token-frequency spam model: per token, how many ham and spam
// training mails contained it. It is safe for concurrent use: Score takes a
// read lock, Learn and Unlearn a write lock. The zero value is not usable;
// use New.
type Model struct {
	mu struct {
		sync.RWMutex
		nham, nspam uint32
		tokens      map[string]counts
		lr          logistic
		// shape is a second regression over the structure tokens only
		// (isShape): a view of how a mail is built, without its words.
		shape logistic
		stack stacker
	}
}

// Doc is one training mail as its distinct tokens (from Tokens).
type Doc struct {
	Tokens []string
	Class  Class
}

// Train builds a model from a training set: token counts for the
// chi-square judge, and logistic-regression weights fitted in batch (a
// better fit than the one online step per mail Learn makes). The result
// depends only on docs and their order, not on timing or map order.
func Train(docs []Doc) *Model {
	m := New()
	for _, d := range docs {
		m.countLocked(d.Tokens, d.Class)
	}
	m.mu.stack = fitStacker(m, docs)
	m.mu.lr.fit(docs)
	m.mu.shape.fit(shapeDocs(docs))
	return m
}

// fitStacker fits the stacker on out-of-sample judge outputs: the training
// set is split into stackFolds inner folds (every stackFolds-th doc), and
// each doc is judged by a chi-square judge whose counts leave out its inner
// fold (the full counts minus the fold's) and a regression fitted without
// it. The inner folds run in parallel; the result does not depend on
// timing.
func fitStacker(m *Model, docs []Doc) stacker {
	var nh, ns int
	for _, d := range docs {
		if d.Class == Spam {
			ns++
		} else {
			nh++
		}
	}
	if nh < 2*stackFolds || ns < 2*stackFolds {
		return stacker{}
	}
	xs := make([][nStack]float64, len(docs))
	ys := make([]float64, len(docs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for j := range stackFolds {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out := foldCounts{tokens: map[string]counts{}}
			var train []Doc
			for i, d := range docs {
				if i%stackFolds != j {
					train = append(train, d)
					continue
				}
				out.add(d)
			}
			var lr, shape logistic
			lr.fit(train)
			shape.fit(shapeDocs(train))
			nham, nspam := float64(m.mu.nham-out.nham), float64(m.mu.nspam-out.nspam)
			for i := j; i < len(docs); i += stackFolds {
				d := docs[i]
				jd, _ := m.judgeLocked(d.Tokens, nham, nspam, out.tokens, &lr, &shape)
				xs[i] = jd.stackInputs()
				ys[i] = label(d.Class)
			}
		})
	}
	wg.Wait()
	var st stacker
	st.fit(xs, ys)
	return st
}

// foldCounts are the counts of one inner fold, subtracted from a model's.
type foldCounts struct {
	nham, nspam uint32
	tokens      map[string]counts
}

func (f *foldCounts) add(d Doc) {
	if d.Class == Spam {
		f.nspam++
	} else {
		f.nham++
	}
	for _, tok := range d.Tokens {
		n := f.tokens[tok]
		if d.Class == Spam {
			n.spam++
		} else {
			n.ham++
		}
		f.tokens[tok] = n
	}
}

// New returns an empty model. An empty model scores every mail 0.5
// (unsure).
func New() *Model {
	m := &Model{}
	m.mu.tokens = make(map[string]counts)
	return m
}

// Learn adds one raw mail of class c to the model.
func (m *Model) Learn(raw []byte, c Class) { m.LearnTokens(Tokens(raw), c) }

// Unlearn removes one raw mail of class c that was learnt before (a user
// moved it out of Junk, say). Unlearning a mail never learnt leaves the
// counts at zero rather than wrapping.
func (m *Model) Unlearn(raw []byte, c Class) { m.UnlearnTokens(Tokens(raw), c) }

// LearnTokens adds one mail given as its distinct tokens (from Tokens). It
// lets an evaluation tokenize each mail once and train many models.
func (m *Model) LearnTokens(toks []string, c Class) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countLocked(toks, c)
	m.mu.lr.step(toks, label(c), lrRate)
	m.mu.shape.step(shapeTokens(toks), label(c), lrRate)
}

func label(c Class) float64 {
	if c == Spam {
		return 1
	}
	return 0
}

// countLocked adds one mail's tokens to the counts.
// REQUIRES: m.mu held for writing (or m not yet shared).
func (m *Model) countLocked(toks []string, c Class) {
	if c == Spam {
		m.mu.nspam++
	} else {
		m.mu.nham++
	}
	for _, tok := range toks {
		n := m.mu.tokens[tok]
		if c == Spam {
			n.spam++
		} else {
			n.ham++
		}
		m.mu.tokens[tok] = n
	}
}

// UnlearnTokens removes one mail given as its distinct tokens. The counts
// are exact; the regression cannot forget one mail exactly, so it takes an
// SGD step away from the class instead, which undoes most of the mail's
// pull.
func (m *Model) UnlearnTokens(toks []string, c Class) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.lr.step(toks, label(c), -lrRate)
	m.mu.shape.step(shapeTokens(toks), label(c), -lrRate)
	if c == Spam {
		m.mu.nspam = decr(m.mu.nspam)
	} else {
		m.mu.nham = decr(m.mu.nham)
	}
	for _, tok := range toks {
		n, ok := m.mu.tokens[tok]
		if !ok {
			continue
		}
		if c == Spam {
			n.spam = decr(n.spam)
		} else {
			n.ham = decr(n.ham)
		}
		// Keep every count within its class total, so a model stays
		// valid (and marshals) whatever order feedback arrives in.
		n.ham, n.spam = min(n.ham, m.mu.nham), min(n.spam, m.mu.nspam)
		if n == (counts{}) {
			delete(m.mu.tokens, tok)
		} else {
			m.mu.tokens[tok] = n
		}
	}
}

func decr(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return n - 1
}

// Stats describes a model's size.
type Stats struct {
	Ham, Spam uint32 // training mails
	Tokens    int    // distinct tokens
}

// Stats returns the model's training counts and size.
func (m *Model) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Ham: m.mu.nham, Spam: m.mu.nspam, Tokens: len(m.mu.tokens)}
}

// Clue is one token's evidence in a Result.
type Clue struct {
	Token string
	Prob  float64 // the token's spam probability f(w)
}

// Result is the classifier's judgement of one mail.
type Result struct {
	// Prob is the spam probability in [0, 1]: near 0 ham, near 1 spam,
	// around 0.5 unsure (also for an untrained model or an empty mail).
	// It is the two judges combined (combine).
	Prob float64
	// Chi and LR are the two judges' own probabilities: chi-square
	// combining of token ratios, and the logistic regression.
	Chi, LR float64
	// SpamEv and HamEv are the chi-square judge's evidence in nats (-ln of
	// each chi-square tail): unlike Chi they do not saturate at 0 or 1.
	SpamEv, HamEv float64
	// Clues are the strongest tokens that pushed Prob the way it went,
	// strongest first, at most a few.
	Clues []Clue
}

// Reason formats r as one short line, e.g.
// `0.9993 (viagra, subject "free", click)`.
func (r Result) Reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.4f", r.Prob)
	if len(r.Clues) > 0 {
		b.WriteString(" (")
		for i, c := range r.Clues {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(describe(c.Token))
		}
		b.WriteString(")")
	}
	return b.String()
}

// describe turns a token into words a mailbox owner can read.
func describe(tok string) string {
	for _, p := range []struct{ prefix, say string }{
		{pSubject, "subject "}, {pFromName, "from "}, {pFromDom, "from domain "},
		{pMailer, "mailer "}, {pURL, "link "}, {pURLPath, "link "}, {pTag, "html "},
		{pAttr, "html "}, {pHeaderName, "header "}, {pHeaderOrder, "header layout "}, {pMeta, ""},
	} {
		if rest, ok := strings.CutPrefix(tok, p.prefix); ok {
			return p.say + rest
		}
	}
	return tok
}

// Score judges one raw mail.
func (m *Model) Score(raw []byte) Result { return m.ScoreTokens(Tokens(raw)) }

// ScoreTokens judges one mail given as its distinct tokens.
func (m *Model) ScoreTokens(toks []string) Result {
	m.mu.RLock()
	jd, clues := m.judgeLocked(toks, float64(m.mu.nham), float64(m.mu.nspam), nil, &m.mu.lr, &m.mu.shape)
	plr := m.mu.lr.prob(toks)
	st := m.mu.stack
	m.mu.RUnlock()
	p := combine(jd.pchi, plr)
	if st.fitted {
		p = st.prob(jd.stackInputs())
	}
	return Result{Prob: p, Chi: jd.pchi, LR: plr, SpamEv: jd.spamEv, HamEv: jd.hamEv, Clues: reasons(clues, p)}
}

// judged is what the judges say of one mail: the stacker's raw inputs.
type judged struct {
	// spamEv and hamEv are the chi-square judge's evidence (chiEvidence)
	// over all tokens, pchi its probability, nclues its clue count.
	spamEv, hamEv, pchi float64
	nclues              int
	// margin and shapeMargin are the two regressions' margins.
	margin, shapeMargin float64
	// shapeNet and headerNet are the chi-square judge's spam minus ham
	// evidence over the shape tokens alone (isShape) and over the header
	// tokens alone (isHeader).
	shapeNet, headerNet float64
}

// judgeLocked runs the judges on a token set: the chi-square judge with
// the model's counts (less minus, an inner fold's, if given) and the
// regressions lr and shape. It also returns the chi-square clues, for
// Reason.
// REQUIRES: m.mu held (read), or m not yet shared.
func (m *Model) judgeLocked(toks []string, nham, nspam float64, minus map[string]counts, lr, shape *logistic) (judged, []Clue) {
	stoks := shapeTokens(toks)
	clues := m.cluesLocked(toks, nham, nspam, minus)
	jd := judged{pchi: chiCombine(clues), nclues: len(clues), margin: lr.margin(toks), shapeMargin: shape.margin(stoks)}
	jd.spamEv, jd.hamEv = chiEvidence(clues)
	se, he := chiEvidence(m.cluesLocked(stoks, nham, nspam, minus))
	jd.shapeNet = se - he
	se, he = chiEvidence(m.cluesLocked(headerTokens(toks), nham, nspam, minus))
	jd.headerNet = se - he
	return jd, clues
}

// cluesLocked returns the clues of a token set, strongest first, picked
// (pickClues). Counts in minus (an inner fold's) are subtracted first.
// REQUIRES: m.mu held (read), or m not yet shared.
func (m *Model) cluesLocked(toks []string, nham, nspam float64, minus map[string]counts) []Clue {
	if nham <= 0 || nspam <= 0 {
		return nil
	}
	clues := make([]Clue, 0, len(toks))
	for _, tok := range toks {
		n, ok := m.mu.tokens[tok]
		if !ok {
			continue
		}
		if o, ok := minus[tok]; ok {
			n.ham -= o.ham
			n.spam -= o.spam
			if n == (counts{}) {
				continue
			}
		}
		p := tokenProb(n, nham, nspam)
		if math.Abs(p-0.5) >= minStrength {
			clues = append(clues, Clue{Token: tok, Prob: p})
		}
	}
	// Strongest first; ties by token so the result is deterministic.
	slices.SortFunc(clues, func(a, b Clue) int {
		if c := cmp.Compare(math.Abs(b.Prob-0.5), math.Abs(a.Prob-0.5)); c != 0 {
			return c
		}
		return strings.Compare(a.Token, b.Token)
	})
	return pickClues(clues)
}

// pickClues keeps the strongest clues, at most maxClues, and at most
// maxMarkupClues from HTML markup and maxMetaClues from structure tokens.
// Chi-square combining assumes independent evidence; markup tokens are
// anything but (every HTML mail has <meta>, <font size>, <table height>
// together), and without a cap a ham newsletter in HTML is outvoted by its
// own layout.
func pickClues(sorted []Clue) []Clue {
	var markup, meta int
	out := sorted[:0]
	for _, c := range sorted {
		switch {
		case strings.HasPrefix(c.Token, pTag) || strings.HasPrefix(c.Token, pAttr):
			if markup++; markup > maxMarkupClues {
				continue
			}
		case strings.HasPrefix(c.Token, pMeta):
			if meta++; meta > maxMetaClues {
				continue
			}
		}
		out = append(out, c)
		if len(out) == maxClues {
			break
		}
	}
	return out
}

// tokenProb is Robinson's f(w): the token's spam ratio, shrunk towards
// unknownProb when it was seen in few mails. Ratios rather than raw counts
// make an unbalanced training set (more ham than spam) not bias it.
func tokenProb(n counts, nham, nspam float64) float64 {
	hr := float64(n.ham) / nham
	sr := float64(n.spam) / nspam
	if hr+sr == 0 {
		return unknownProb
	}
	p := sr / (hr + sr)
	total := float64(n.ham + n.spam)
	return (unknownStrength*unknownProb + total*p) / (unknownStrength + total)
}

// chiCombine is Fisher's method as SpamBayes uses it: how unlikely the
// clues are under "all random" towards spam (S) and towards ham (H), and
// the result (1+S-H)/2. Both near 1 (a mail with strong evidence both ways)
// gives 0.5, which the policy reads as unsure: that is what makes this
// combining safe for a reject-only-when-sure policy.
func chiCombine(clues []Clue) float64 {
	if len(clues) == 0 {
		return 0.5
	}
	var lnS, lnH float64
	for _, c := range clues {
		lnH += math.Log(c.Prob)
		lnS += math.Log1p(-c.Prob)
	}
	n := 2 * len(clues)
	s := 1 - chi2Q(-2*lnS, n)
	h := 1 - chi2Q(-2*lnH, n)
	return (s - h + 1) / 2
}

// chi2Q is the upper tail of the chi-square distribution with v (even)
// degrees of freedom at x2.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	term := math.Exp(-m)
	sum := term
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return min(sum, 1)
}

// reasons picks the strongest clues on the side the verdict went.
func reasons(clues []Clue, p float64) []Clue {
	var out []Clue
	for _, c := range clues {
		if (p >= 0.5) == (c.Prob >= 0.5) {
			out = append(out, c)
			if len(out) == reasonClues {
				break
			}
		}
	}
	return out
}

// chiEvidence returns -ln of the two chi-square tails: how strongly the
// clues reject "random towards spam" (spam evidence) and "random towards
// ham" (ham evidence), in nats, without the saturation of chiCombine.
func chiEvidence(clues []Clue) (spamEv, hamEv float64) {
	if len(clues) == 0 {
		return 0, 0
	}
	var lnS, lnH float64
	for _, c := range clues {
		lnH += math.Log(c.Prob)
		lnS += math.Log1p(-c.Prob)
	}
	n := 2 * len(clues)
	return -lnChi2Q(-2*lnS, n), -lnChi2Q(-2*lnH, n)
}

// lnFact[i] is ln(i!) for the terms of lnChi2Q (v/2 <= maxClues).
var lnFact = func() [maxClues]float64 {
	var t [maxClues]float64
	for i := 1; i < maxClues; i++ {
		t[i] = t[i-1] + math.Log(float64(i))
	}
	return t
}()

// lnChi2Q is ln of chi2Q, computed in log space so tiny tails keep their
// magnitude.
func lnChi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	if m <= 0 {
		return 0
	}
	lm := math.Log(m)
	// Q = e^-m · Σ_{i<v/2} m^i/i!, summed as log-sum-exp of the terms
	// i·ln m − ln i!.
	n := min(v/2, len(lnFact))
	mx := math.Inf(-1)
	for i := range n {
		mx = max(mx, float64(i)*lm-lnFact[i])
	}
	var sum float64
	for i := range n {
		sum += math.Exp(float64(i)*lm - lnFact[i] - mx)
	}
	return min(0, -m+mx+math.Log(sum))
}
