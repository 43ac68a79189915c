package corpus

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
)

// corpusPath is shared/corpus of the workspace, seen from this package
// (services/spamd/internal/corpus); TWINMX_CORPUS overrides it.
func corpusPath() string {
	if p := os.Getenv("TWINMX_CORPUS"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "..", "..", "..", "shared", "corpus", "spamassassin-train.tar.gz")
}

// loadCorpus loads the real corpus. It skips only when the file is missing
// and TWINMX_REQUIRE_CORPUS is unset; CI sets it, so there a missing
// corpus fails.
func loadCorpus(tb testing.TB) []Mail {
	tb.Helper()
	p := corpusPath()
	if _, err := os.Stat(p); err != nil && os.Getenv("TWINMX_REQUIRE_CORPUS") == "" {
		tb.Skipf("corpus %s missing and TWINMX_REQUIRE_CORPUS unset: %v", p, err)
	}
	mails, err := Load(p)
	if err != nil {
		tb.Fatalf("load corpus: %v", err)
	}
	if len(mails) < 4000 {
		tb.Fatalf("corpus has %d mails, want the 4214 of shared/corpus", len(mails))
	}
	return mails
}

// What the classifier must hold on the real corpus. Zero ham rejected is
// the product promise and is asserted on every run, full or small. Spam
// recall is short of the target (> 96%): docs/spamd.md "Measured"
// has 0 of 2895 ham rejected and 86.4% (hints kept) / 85.9% (hints
// stripped) of spam at k=5. The recall floors are those figures less a
// small margin, so a regression fails the build; TWINMX_SPAMD_TARGET=1
// checks the recall target instead (it fails today).
const (
	maxHamRejected  = 0
	floorMinRecall  = 83.0 // percent, full run (measured 86.4 / 85.9)
	raceMinRecall   = 63.0 // percent, race-mode run (measured 66.8)
	targetMinRecall = 96.0
)

// TestKFoldCorpus runs the k-fold evaluation on the real corpus, with and
// without the corpus's hints, and checks ham rejected and spam recall per
// class. Under the race detector (and with -short) it runs k=2 on every
// fourth mail with hints stripped only (about 18 s of CPU under -race):
// the full run takes about a minute without -race and many with it, and
// the smaller run still checks the same properties on unseen mail in CI
// (`make test` runs -race).
func TestKFoldCorpus(t *testing.T) {
	mails := loadCorpus(t)
	opt := Options{K: 5}
	minRecall := floorMinRecall
	strips := []bool{false, true}
	if raceEnabled || testing.Short() {
		opt = Options{K: 2, Every: 4}
		minRecall = raceMinRecall
		strips = []bool{true} // the harder setting; both would double the time under -race
	}
	if os.Getenv("TWINMX_SPAMD_TARGET") != "" {
		minRecall = targetMinRecall
	}
	for _, strip := range strips {
		opt.StripHints = strip
		rep, err := KFold(mails, opt)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := rep.WriteTable(&buf); err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", buf.String())
		ham, spam := rep.Totals(classify.Ham), rep.Totals(classify.Spam)
		if ham.Rejected > maxHamRejected {
			for _, j := range rep.Mails {
				if j.Class == classify.Ham && j.Decision.Verdict == model.Reject {
					t.Logf("ham rejected: %s: %s", j.Name, j.Decision.Reason)
				}
			}
			t.Errorf("strip hints %v: %d ham rejected, want %d", strip, ham.Rejected, maxHamRejected)
		}
		if spam.Recall() < minRecall {
			t.Errorf("strip hints %v: spam recall %.2f%%, want >= %.2f%%", strip, spam.Recall(), minRecall)
		}
		if spam.Total == 0 || ham.Total == 0 {
			t.Errorf("strip hints %v: %d ham, %d spam judged", strip, ham.Total, spam.Total)
		}
	}
}

func TestFolds(t *testing.T) {
	var mails []Mail
	for _, g := range []string{"a", "b"} {
		for i := range 7 {
			mails = append(mails, Mail{Name: g + strings.Repeat("x", i), Group: g})
		}
	}
	folds := Folds(mails, 3)
	per := map[[2]int]int{}
	for i, f := range folds {
		if f < 0 || f >= 3 {
			t.Fatalf("fold %d out of range", f)
		}
		per[[2]int{int(mails[i].Group[0]), f}]++
	}
	for k, n := range per {
		if n < 2 || n > 3 {
			t.Errorf("group %c fold %d has %d mails, want 2 or 3", k[0], k[1], n)
		}
	}
	again := Folds(mails, 3)
	for i := range folds {
		if folds[i] != again[i] {
			t.Fatal("Folds is not deterministic")
		}
	}
}

func TestStripHints(t *testing.T) {
	in := "From jm@x  Mon\nReceived: from a by mail.spamassassin.taint.org\n\tcontinued\nList-Id: <razor-users.example.sourceforge.net>\nSender: razor-users-admin@lists.sourceforge.net\nSubject: Re: [Razor-users] [ILUG] help with razor\nTo: zzzz@spamassassin.taint.org\nX-Spam-Status: No\n\nbody for ILUG readers\n_______________________________________________\nRazor-users mailing list\nRazor-users@lists.sourceforge.net\nhttps://lists.sourceforge.net/lists/listinfo/razor-users\n\nafter footer\n"
	got := string(StripHints([]byte(in)))
	for _, gone := range []string{"Received", "continued", "List-Id", "Sender", "[Razor-users]", "[ILUG]", "zzzz", "taint", "X-Spam", "listinfo", "ILUG", "mailing list"} {
		if strings.Contains(got, gone) {
			t.Errorf("StripHints left %q in:\n%s", gone, got)
		}
	}
	for _, kept := range []string{"Subject: Re: help with razor", "body for", "after footer"} {
		if !strings.Contains(got, kept) {
			t.Errorf("StripHints lost %q:\n%s", kept, got)
		}
	}
}

// BenchmarkJudge measures decide.Decide on corpus mail (tokenize + score,
// what the daemon does per mail) with a model trained on 4/5 of the corpus.
// The target is >= 1,000 mails/s on one core: ns/op <= 1,000,000.
func BenchmarkJudge(b *testing.B) {
	mails := loadCorpus(b)
	folds := Folds(mails, 5)
	var docs []classify.Doc
	var test [][]byte
	for i, m := range mails {
		if folds[i] == 0 {
			test = append(test, m.Raw)
			continue
		}
		docs = append(docs, classify.Doc{Tokens: classify.Tokens(m.Raw), Class: m.Class})
	}
	cm := classify.Train(docs)
	b.ResetTimer()
	n := 0
	for b.Loop() {
		decide.Decide(cm, decide.Input{Raw: test[n%len(test)]})
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "mails/s")
}
