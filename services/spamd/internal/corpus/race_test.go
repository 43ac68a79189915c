//go:build race

package corpus

// raceEnabled: the race detector slows tokenizing and training about
// tenfold, so the corpus test runs a smaller k-fold under it (see
// TestKFoldCorpus).
const raceEnabled = true
