// Package judge is spamd's daemon core (SPEC §7): it watches dbd for
// delivery attempts and writes a verdict on every receive row they name,
// within milliseconds, with a score and a human-readable reason.
//
// What drives it: smtpd stores one throw-in row per attempt in the same
// atomic batch as the mail's rows; the throw-in names the mail, the
// client, the HELO name, the envelope and the attempt's time. judge watches
// the throw-in table (dbd pushes every new row), reads each new throw-in,
// and judges each recipient's receive row. At start it also judges the
// newest throw-ins, so mail stored while spamd was down is decided.
//
// Determinism: the verdict's epoch is the attempt's time from the throw-in
// (not the judge's clock), and the decision uses only rows in dbd (lists,
// known correspondents, greylisting marks, the model) and DNS. So two
// instances, on one site or two, write the same value, and the column merge
// keeps one answer.
//
// Greylisting (a signal, see package decide): a first contact — client
// network, envelope sender and recipient never seen passing — that is not
// clearly good gets Retry, and smtpd answers 451. When the same mail comes
// back (a new throw-in at least GreyDelay later), judge decides it for
// real at the new attempt's epoch, which outranks the Retry, and records
// the triplet as passed in an rdns row so later mail from it skips the
// wait. smtpd waits for that new verdict rather than repeating the old
// Retry (deliver.Policy.Since).
//
// Rows judge writes (all replicate):
//   - receive: `verdict` (source filter), `spam.score` (probability × 10^6;
//     not for Retry, as the column only rises and the definite verdict
//     that replaces a Retry may score lower), the link to its reason
//     (model.ReasonColumn, value: attempt ms), and, with a Retry,
//     `spam.grey.first.inv` (MaxUint32 minus the mail's first contact's
//     Unix second, which its retries count the delay from whatever their
//     network or sender tag);
//   - text reason rows (model.ReasonContent), shown by dbctl mails;
//   - text `twinmx-known/1` rows (mailbox, normalised sender) with column
//     `known`: the mailbox accepted clear mail from this sender;
//   - rdns `twinmx-grey/1` rows (network, normalised sender, recipient) with columns
//     `first.inv` (MaxUint32 minus the first contact's Unix second: the
//     earliest wins under max-merge) and `passed`.
//
// The rejection digest (package digest) has two hooks here, run after the
// "an operator's verdict is final" check and before every other signal: a
// mail to the digest's allow address is the owner's reply (accepted when it
// carried at least one valid ALLOW token, 550 otherwise), and a mail whose
// X-Twinmx-Digest MAC verifies for its mailbox is spamd's own digest
// (accepted).
//
// It reads per-mailbox allow/block lists from text `twinmx-list/1` rows
// (mailbox, sender address or @domain) with column `list` (ListValue),
// matching the envelope address, its normalised form and the @domain of
// either (listCandidates); the envelope address's own entry decides, else
// any block wins over any allow.
//
// Sender keys: the grey and known rows hold the normalised envelope sender
// (package sender: BATV, SRS and VERP tags removed), so a sender that tags
// every mail passes greylisting and becomes known once. Rows written
// before 2026-12-03 hold the raw lower-cased sender; senderKeys reads
// those too, and a hit on one writes the normalised row (a known hit
// through the accepted mail, a passed hit through the verdict's batch).
package judge
