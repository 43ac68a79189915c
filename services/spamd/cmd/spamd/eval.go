package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/corpus"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "judge mail files with the classifier and policy, or run a k-fold evaluation",
		Description: "Each PATH is an .eml file, a folder of them, or a corpus .tar.gz. Prints one line a mail:\n" +
			"PATH<TAB>accept|reject|retry<TAB>SCORE<TAB>REASON, then a summary. With --kfold K, trains on\n" +
			"K-1 folds and judges the rest (mails must sit under ham/ or spam/ folders) and prints a per-folder table.",
		ArgsUsage: "PATH...",
		Flags: []cli.Flag{
			modelDirFlag(),
			&cli.IntFlag{Name: "kfold", Usage: "k-fold cross-validation with K folds (no model needed)"},
			&cli.BoolFlag{Name: "strip-hints", Usage: "remove the corpus's collection hints (list names, rewritten addresses) first"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "with --kfold, also print one line a mail"},
			&cli.StringFlag{Name: "write-folds", Usage: "with --kfold, write each fold as DIR/fold-N/{ham,spam}/*.eml (hints stripped if asked) and the twinmx verdicts as DIR/twinmx.tsv"},
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("eval: no PATH given")
	}
	mails, err := corpus.Load(c.Args().Slice()...)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	if k := c.Int("kfold"); k > 0 {
		return runKFold(c, w, mails, k)
	}
	m, err := loadModel(c.String("model"))
	if err != nil {
		return err
	}
	var counts [4]int
	var perClass [2][4]int
	start := time.Now()
	for _, ml := range mails {
		raw := ml.Raw
		if c.Bool("strip-hints") {
			raw = corpus.StripHints(raw)
		}
		d := decide.Decide(m, decide.Input{Raw: raw})
		writeLine(w, ml.Name, d)
		counts[d.Verdict]++
		if ml.Labeled {
			perClass[ml.Class][d.Verdict]++
		}
	}
	el := time.Since(start)
	fmt.Fprintf(w, "summary: %d mails, %d accept, %d reject, %d retry, %.0f mails/s\n",
		len(mails), counts[model.Accept], counts[model.Reject], counts[model.Retry], float64(len(mails))/el.Seconds())
	for _, cl := range []classify.Class{classify.Ham, classify.Spam} {
		if n := perClass[cl]; n[model.Accept]+n[model.Reject]+n[model.Retry] > 0 {
			fmt.Fprintf(w, "summary %s: %d reject of %d\n", cl, n[model.Reject], n[model.Accept]+n[model.Reject]+n[model.Retry])
		}
	}
	return nil
}

func writeLine(w io.Writer, name string, d decide.Decision) {
	reason := strings.NewReplacer("\t", " ", "\n", " ").Replace(d.Reason)
	fmt.Fprintf(w, "%s\t%s\t%.4f\t%s\n", name, d.Verdict, d.Score, reason)
}

func runKFold(c *cli.Context, w *bufio.Writer, mails []corpus.Mail, k int) error {
	rep, err := corpus.KFold(mails, corpus.Options{K: k, StripHints: c.Bool("strip-hints")})
	if err != nil {
		return err
	}
	if c.Bool("verbose") {
		for _, j := range rep.Mails {
			writeLine(w, j.Name, j.Decision)
		}
	}
	if dir := c.String("write-folds"); dir != "" {
		if err := writeFolds(dir, mails, rep, c.Bool("strip-hints")); err != nil {
			return err
		}
	}
	return rep.WriteTable(w)
}

// writeFolds writes the split for other filters (deploy/bench/spam-compare.sh):
// DIR/fold-N/ham|spam/<group>-<id>.eml, plus DIR/twinmx.tsv with the fold,
// class, group, name and twinmx verdict of every mail.
func writeFolds(dir string, mails []corpus.Mail, rep corpus.Report, strip bool) error {
	tsv, err := os.Create(filepath.Join(dir, "twinmx.tsv"))
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write folds: %w", err)
		}
		tsv, err = os.Create(filepath.Join(dir, "twinmx.tsv"))
	}
	if err != nil {
		return fmt.Errorf("write folds: %w", err)
	}
	defer tsv.Close()
	for i, m := range mails {
		j := rep.Mails[i]
		sub := filepath.Join(dir, fmt.Sprintf("fold-%d", j.Fold), m.Class.String())
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return fmt.Errorf("write folds: %w", err)
		}
		raw := m.Raw
		if strip {
			raw = corpus.StripHints(raw)
		}
		base := filepath.Base(m.Name)
		if err := os.WriteFile(filepath.Join(sub, base), raw, 0o644); err != nil {
			return fmt.Errorf("write folds: %w", err)
		}
		fmt.Fprintf(tsv, "%d\t%s\t%s\t%s\t%s\n", j.Fold, m.Class, m.Group, base, j.Decision.Verdict)
	}
	if err := tsv.Close(); err != nil {
		return fmt.Errorf("write folds: %w", err)
	}
	return nil
}
