package corpus

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
)

// Options configure a k-fold evaluation.
type Options struct {
	K int // folds, at least 2
	// StripHints removes the corpus's collection hints (StripHints) from
	// every mail before training and judging.
	StripHints bool
	// Every, when > 1, keeps only every Every-th mail of each group (in
	// Name order) before folding: a smaller but still stratified run for
	// slow environments (the race detector). 0 or 1 keeps all.
	Every int
}

// Judged is one mail's outcome in an evaluation.
type Judged struct {
	Name     string
	Group    string
	Class    classify.Class
	Fold     int
	Decision decide.Decision
}

// GroupStats counts the verdicts for one corpus group.
type GroupStats struct {
	Group    string
	Class    classify.Class
	Total    int
	Rejected int
	Retried  int
}

// Report is the result of a k-fold evaluation.
type Report struct {
	Options Options
	Groups  []GroupStats // ham groups first, then spam, each by name
	Mails   []Judged     // in corpus order
	// JudgeTime is the time spent in decide.Decide (tokenizing and scoring
	// raw mail, as the daemon does), on one goroutine.
	JudgeTime time.Duration
	// ModelBytes, ModelTokens and ModelHeap describe the last fold's model:
	// its MarshalBinary size, distinct tokens, and the heap it occupies
	// (live heap growth while it was built, after GC).
	ModelBytes  int
	ModelTokens int
	ModelHeap   uint64
}

// ErrNoLabels reports a corpus without ham or without spam.
var ErrNoLabels = errors.New("corpus: k-fold needs labelled ham and spam")

// KFold trains on k−1 folds and judges the remaining one, for each of the
// k folds, with decide.Decide and no network signals (the eval setting).
// Each mail is judged exactly once, by a model that never saw it.
func KFold(mails []Mail, opt Options) (Report, error) {
	if opt.K < 2 {
		return Report{}, fmt.Errorf("k-fold: k = %d, want >= 2", opt.K)
	}
	mails = sample(mails, opt.Every)
	var nham, nspam int
	for _, m := range mails {
		if !m.Labeled {
			return Report{}, fmt.Errorf("k-fold: %s: %w (no ham/spam directory)", m.Name, ErrNoLabels)
		}
		if m.Class == classify.Spam {
			nspam++
		} else {
			nham++
		}
	}
	if nham < opt.K || nspam < opt.K {
		return Report{}, fmt.Errorf("k-fold: %d ham, %d spam for k = %d: %w", nham, nspam, opt.K, ErrNoLabels)
	}
	raws := make([][]byte, len(mails))
	toks := make([][]string, len(mails))
	for i, m := range mails {
		raws[i] = m.Raw
		if opt.StripHints {
			raws[i] = StripHints(m.Raw)
		}
		toks[i] = classify.Tokens(raws[i])
	}
	folds := Folds(mails, opt.K)
	rep := Report{Options: opt, Mails: make([]Judged, len(mails))}
	for f := range opt.K {
		var before runtime.MemStats
		if f == opt.K-1 {
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		var docs []classify.Doc
		for i, m := range mails {
			if folds[i] != f {
				docs = append(docs, classify.Doc{Tokens: toks[i], Class: m.Class})
			}
		}
		cm := classify.Train(docs)
		if f == opt.K-1 {
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			if after.HeapAlloc > before.HeapAlloc {
				rep.ModelHeap = after.HeapAlloc - before.HeapAlloc
			}
			b, err := cm.MarshalBinary()
			if err != nil {
				return Report{}, fmt.Errorf("k-fold: marshal model: %w", err)
			}
			rep.ModelBytes, rep.ModelTokens = len(b), cm.Stats().Tokens
		}
		start := time.Now()
		for i, m := range mails {
			if folds[i] != f {
				continue
			}
			d := decide.Decide(cm, decide.Input{Raw: raws[i]})
			rep.Mails[i] = Judged{Name: m.Name, Group: m.Group, Class: m.Class, Fold: f, Decision: d}
		}
		rep.JudgeTime += time.Since(start)
		runtime.KeepAlive(cm)
	}
	rep.Groups = groupStats(rep.Mails)
	return rep, nil
}

// sample keeps every n-th mail of each group.
func sample(mails []Mail, n int) []Mail {
	if n <= 1 {
		return mails
	}
	seen := map[string]int{}
	var out []Mail
	for _, m := range mails {
		if seen[m.Group]%n == 0 {
			out = append(out, m)
		}
		seen[m.Group]++
	}
	return out
}

func groupStats(js []Judged) []GroupStats {
	by := map[string]*GroupStats{}
	for _, j := range js {
		g := by[j.Group]
		if g == nil {
			g = &GroupStats{Group: j.Group, Class: j.Class}
			by[j.Group] = g
		}
		g.Total++
		switch j.Decision.Verdict {
		case model.Reject:
			g.Rejected++
		case model.Retry:
			g.Retried++
		}
	}
	out := make([]GroupStats, 0, len(by))
	for _, g := range by {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b GroupStats) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), strings.Compare(a.Group, b.Group))
	})
	return out
}

// Totals sums the groups of one class.
func (r Report) Totals(c classify.Class) GroupStats {
	t := GroupStats{Group: "all " + c.String(), Class: c}
	for _, g := range r.Groups {
		if g.Class == c {
			t.Total += g.Total
			t.Rejected += g.Rejected
			t.Retried += g.Retried
		}
	}
	return t
}

// Recall is the share of spam rejected, in percent.
func (g GroupStats) Recall() float64 {
	if g.Total == 0 {
		return 0
	}
	return 100 * float64(g.Rejected) / float64(g.Total)
}

// MailsPerSecond is the judging throughput on one goroutine.
func (r Report) MailsPerSecond() float64 {
	if r.JudgeTime <= 0 {
		return 0
	}
	return float64(len(r.Mails)) / r.JudgeTime.Seconds()
}

// WriteTable prints the per-group table and the speed and model figures.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	hints := "kept"
	if r.Options.StripHints {
		hints = "stripped"
	}
	fmt.Fprintf(tw, "k-fold k=%d, corpus hints %s, reject at p >= %.2f\t\t\t\t\n", r.Options.K, hints, decide.RejectAt)
	fmt.Fprintf(tw, "group\tclass\tmails\trejected\trejected %%\t\n")
	rows := append([]GroupStats(nil), r.Groups...)
	rows = append(rows, r.Totals(classify.Ham), r.Totals(classify.Spam))
	for _, g := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t\n", g.Group, g.Class, g.Total, g.Rejected, g.Recall())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "judged %d mails in %v: %.0f mails/s on one goroutine\nmodel (last fold): %d tokens, %d bytes marshalled, %.1f MiB heap\n",
		len(r.Mails), r.JudgeTime.Round(time.Millisecond), r.MailsPerSecond(), r.ModelTokens, r.ModelBytes, float64(r.ModelHeap)/(1<<20))
	return err
}
