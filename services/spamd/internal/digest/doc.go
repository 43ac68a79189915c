// Package digest is spamd's rejection digest (SPEC §7, issue 5): every
// period (default an hour) each mailbox with refused mail gets one mail
// listing what was refused since its previous digest, and a reply to it
// can put a listed sender on the mailbox's allow list.
//
// # Sending
//
// spamd may not insert mail rows (docs/roles.md), so a pass hands each
// digest to the local smtpd over SMTP (null envelope sender), like any
// other mail. Judge accepts it before every other signal when its
// X-Twinmx-Digest field verifies: "v1 " and an HMAC-SHA256, with the
// shared secret, of the Message-ID, the recipient mailbox, the Subject
// and the body's SHA-256 (CRs and trailing line breaks removed). A digest
// replayed to another mailbox, or with another body, is judged like any
// mail.
//
// Which refusals: a pass reads the newest Scan receive rows; a row whose
// verdict decodes to Reject (any source), not older than Lookback and not
// marked `spam.digested`, is listed in its mailbox's digest. After smtpd
// accepted the digest, the rows get `spam.digested` (Unix ms), so a
// refusal is listed once whatever the clocks say. The envelope sender comes
// from the newest Scan throw-ins; the reason from the reason row
// (model.LatestReason).
//
// # The secret
//
// A config row "twinmx-digest-secret/1" with four 64-bit columns k0..k3,
// made by the first pass that finds none. At one site only the instance
// whose find-or-insert created the row sets the columns (the others wait
// for them), so instances started together agree at once. Columns only
// rise, so two instances that create it at two sites before replication
// converge on the same mixed secret; tokens issued before that converge
// stop verifying (first start of both sites at once only). The config table is readable by every
// role (docs/roles.md): the secret protects against mail senders, not
// against another twinmx service's key.
//
// # Allow tokens
//
// Each listed refusal with an envelope sender carries "ALLOW <token>",
// token = the first 80 bits of HMAC-SHA256(secret, mailbox, sender) in
// lower-case base32 (16 characters). A digest lists at most MaxEntries
// refusals one by one (the oldest); every sender of the rest still gets an
// ALLOW (addRest): a sender listed above by its normalised address
// (package sender) has the rest linked to the token of its newest entry,
// any other gets one line "ALLOW <token>  N x <normalised sender>" with
// the token of (mailbox, normalised sender), fewest refusals first, at
// most MaxSenders lines; senders beyond are only counted. MaxEntries and
// MaxSenders together keep every digest within maxOwnSize.
//
// The digest's Reply-To is the allow address (DefaultLocalPart at the
// mailbox's domain unless configured); the pass creates its mailbox row.
// A token must map back to its pair, so
// issuing it stores two text rows: the pair row (mailbox, sender) and a
// token row whose content is made from the token alone, with a link column
// (model.LinkColumn "pair.") to the pair row valued with the issue time,
// and "rcv." links to the refused receive rows it was listed for, in link
// rows of generations (reply.go), so that a reply re-accepts at least the
// sender's newest 64 refusals however often it was refused before.
// A reply's tokens (every "ALLOW <token>" in the raw mail and in its
// base64/quoted-printable text parts, quoted or not, at most 100) are
// looked up by key; a pair counts only if the token is its HMAC and was
// issued within TokenMaxAge. So a forged token, a planted token row, or a
// token of another mailbox allows nothing. Each valid pair gets
// judge.ListValue(attempt time, ListAllow) on its list row, and its
// linked receive rows of that mailbox that the filter refused get Accept
// at the reply's epoch: smtpd answers from the receive row, so the
// sender's retry of the same mail gets 250 (an operator's verdict
// outranks it). The reply is
// accepted ("allow-by-reply processed: N senders") when it allowed a
// sender, refused with 550 when it held no valid token.
//
// # Claims: one digest per mailbox and period
//
// Both sites may run spamd. Periods are aligned to the Unix epoch, so all
// instances agree on period numbers. Per mailbox, a config row
// "twinmx-digest/1\nmailbox: M" holds digest.claim (period<<32 | random
// nonce), digest.done (last period sent) and digest.sent (Unix ms). An
// instance claims when neither claim nor done reaches the period, waits
// ClaimWait, reads again and sends only if its own claim is still the
// maximum. Sets never report whether they raised a value, so the rule is
// "highest claim wins", decided after the wait by everyone alike.
//
// Remaining race: if replication between the sites lags more than
// ClaimWait, two instances both see their own claim as highest and both
// send: a duplicate digest (with different, equally valid tokens). A
// refusal is never lost: a winner that dies before sending leaves the rows
// unmarked, and the next period lists them. Send-then-mark also means a
// crash between the two sends the same refusals again next period.
//
// # Concurrency
//
// A Digester is safe for concurrent use: Run in one goroutine (owned by
// the daemon, ended with its ctx), the judge's hooks (Own, Reply,
// IsReplyAddress) in the judge's workers. It holds no mutable state.
package digest
