// Package corpus reads labelled mail corpora (the SpamAssassin corpus
// tar.gz of shared/corpus, folders of .eml files), splits them into
// deterministic k folds, removes the corpus's collection hints
// (StripHints), and runs the k-fold evaluation behind `spamd eval --kfold`
// and the corpus test.
//
// A mail's class comes from its path: a "ham" or "spam" directory. Its
// group (the per-folder rows of the report) comes from the file name
// "<group>-<id>.eml", else the parent directory. Folds deal each group's
// mails round-robin in name order, so every fold holds its share of every
// group and the split never depends on contents.
package corpus
