package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/corpus"
)

// modelFile is the model's file name inside a model directory.
const modelFile = "model.bin"

func modelDirFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:  "model",
		Usage: "model directory (holds " + modelFile + ")",
		Value: defaultModelDir(),
		// The daemon's variable, so one setting serves both; SPAMD_MODEL
		// is the older name.
		EnvVars: []string{"TWINMX_SPAMD_MODEL", "SPAMD_MODEL"},
	}
}

// defaultModelDir is the user's config dir (~/.config/twinmx/spamd-model
// on Linux), or ./spamd-model when there is none.
func defaultModelDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "twinmx", "spamd-model")
	}
	return "spamd-model"
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:      "train",
		Usage:     "train the content classifier from folders of ham and spam mail",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "ham", Usage: "folder of ham .eml files (repeatable)", Required: true},
			&cli.StringSliceFlag{Name: "spam", Usage: "folder of spam .eml files (repeatable)", Required: true},
			&cli.BoolFlag{Name: "strip-hints", Usage: "remove the SpamAssassin corpus's collection hints first"},
			modelDirFlag(),
		},
		Action: func(c *cli.Context) error {
			var docs []classify.Doc
			for _, set := range []struct {
				paths []string
				class classify.Class
			}{{c.StringSlice("ham"), classify.Ham}, {c.StringSlice("spam"), classify.Spam}} {
				mails, err := corpus.Load(set.paths...)
				if err != nil {
					return err
				}
				for _, m := range mails {
					raw := m.Raw
					if c.Bool("strip-hints") {
						raw = corpus.StripHints(raw)
					}
					docs = append(docs, classify.Doc{Tokens: classify.Tokens(raw), Class: set.class})
				}
			}
			m := classify.Train(docs)
			path, err := saveModel(c.String("model"), m)
			if err != nil {
				return err
			}
			s := m.Stats()
			fmt.Fprintf(c.App.Writer, "trained on %d ham, %d spam: %d tokens, written to %s\n", s.Ham, s.Spam, s.Tokens, path)
			return nil
		},
	}
}

// saveModel writes the model into dir atomically (temp file + rename).
func saveModel(dir string, m *classify.Model) (string, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("encode model: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create model dir: %w", err)
	}
	path := filepath.Join(dir, modelFile)
	tmp, err := os.CreateTemp(dir, modelFile+".*")
	if err != nil {
		return "", fmt.Errorf("write model: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write model %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write model %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("install model: %w", err)
	}
	return path, nil
}

// loadModel reads the model from dir.
func loadModel(dir string) (*classify.Model, error) {
	path := filepath.Join(dir, modelFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m := classify.New()
	if err := m.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("read model %s: %w", path, err)
	}
	return m, nil
}
