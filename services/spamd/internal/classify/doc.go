// Package classify is spamd's content classifier: it turns a raw mail into
// tokens and judges them with two statistical models trained on real ham
// and spam and on user feedback.
//
// # Tokens
//
// Tokens (tokenize.go, html.go) reads only header fields that describe the
// mail itself (Subject, From display name and domain, mailer, recipient
// count, a few priority fields, the shapes of Message-ID and Date, which
// sender fields are present and in what order (headershape.go), and
// whether Message-ID, Reply-To, To and link hosts agree with the From
// domain), never relay or mailing-list headers (List-Unsubscribe
// included), which say more about who collected a mail than about what it
// is. The body is
// walked as a MIME tree (RFC 2045/2046): quoted-printable and base64 are
// decoded, HTML is reduced to its visible text plus markup features (tag,
// tag:attribute, link hosts), and body text also yields word pairs.
// Structure tokens (structure.go) describe the mail as a whole: how many
// sites it links to, redirecting links, link text naming another site than
// the link, where the unsubscribe link goes, whether the body names the
// To address, image-only HTML, words spelt to dodge filters ("v1agra",
// "F R E E"), and how far the text and HTML versions of a
// multipart/alternative agree. Every
// token is prefixed with where it was seen ("s:" subject, "url:" link
// host, ...). Malformed mail never fails: what cannot be parsed is skipped
// and noted as an "m:" token, and all work is bounded (header bytes, MIME
// parts and depth, decoded text per mail).
//
// # Judges
//
// A Model holds, per token, how many ham and how many spam training mails
// contained it. Score combines the strongest tokens' Robinson
// probabilities with Fisher's chi-square method (as SpamBayes does), and
// separately runs a logistic regression over hashed tokens (logistic.go),
// and a second one over the shape tokens only (how the mail is built).
// A small stacked logistic model (stack.go) turns the judges' raw
// outputs (chi-square evidence both ways in nats, the regressions'
// margins) into Result.Prob, through a tail calibration that lets the
// upper end of its scale bend. Train fits both on out-of-sample judge
// outputs from inner folds of the training set, weighting a rejected ham
// hamCost times a missed spam, so a fixed threshold of 0.99 means the same
// thing for every model. A model without a fitted stacker (one built only by Learn)
// falls back to the old rule: the less confident judge when they agree,
// their mean when they disagree.
//
// # Learning
//
// Train fits a model from a training set (exact counts, regression fitted
// in batch, stacker on inner folds, deterministically; the inner folds run
// in parallel). Learn and Unlearn apply one mail of user feedback: counts
// exactly, the regression by one SGD step; the stacker is left as trained.
//
// # Binary form
//
// MarshalBinary writes a compact, versioned, checksummed blob whose bytes
// depend only on the model's contents (layout in binary.go); the daemon
// keeps it in the database.
//
// # Concurrency
//
// A Model is safe for concurrent use: scoring takes a read lock, learning
// a write lock. Tokens is a pure function.
package classify
