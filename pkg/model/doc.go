// Package model defines twinmx's data model (SPEC §3): the tables, the
// content keys that identify rows on every site, the splitting of a raw mail
// into the rows that make up its identity (SPEC §1), the codes of the status
// columns, and the merge rule that makes replication converge.
//
// The package is pure: no I/O, no clocks read, no globals that change. dbd
// stores what it defines, backupd merges with it, and every other service
// computes the same keys with it, so the same mail gets the same rows
// everywhere without the sites agreeing on any number.
//
// # Tables and keys
//
// A row is a byte string (its content) in one of 13 tables (Table). Its key
// is
//
//	SHA-256("twinmx/row/v1/" + table name + "\x00" + content)
//
// (KeyOf, NewKeyHash for streaming). The domain string keeps equal contents
// in two tables apart and lets a future scheme be told from this one. Rows
// reference each other by key, never by dbd's local row numbers.
//
// # Mail identity
//
// SPEC §1: the identity of a mail is its header without its Received fields,
// plus its body. Split cuts a raw mail into
//
//   - the header row: every header field except the Received fields, plus the
//     blank separator line;
//   - the body row: everything after the separator line;
//   - the received row: the Received fields of this one delivery, with their
//     positions (encoding below);
//   - the msgid row: the normalised Message-ID (only as an index, it is not
//     part of the identity: a Message-ID is chosen by the sender and may be
//     reused or missing).
//
// The mail row's content is the header key followed by the body key
// (MailContent), and its key is the mail's identity: a retry of a queued
// mail, to either site, gets new Received fields but the same mail key. A
// receive row (mail key, mailbox key) is one mail in one mailbox.
//
// Invariants, checked by property tests, fuzzing and the whole corpus:
//
//   - Join(Split(x)) == x, byte for byte, for every byte string x (no
//     separator, LF, CRLF or mixed line ends, bare CR, NUL, 8-bit, an mbox
//     "From " line, lines without a colon, empty input). POP3 and IMAP serve
//     exactly the bytes that arrived (SPEC §11.6).
//   - Split's Header and Body do not depend on the Received fields: adding,
//     removing, changing or moving them changes only Received.
//   - Split never panics; Join and every Parse/Decode function reject
//     malformed input with an error and never panic.
//
// Header fields are found as RFC 5322 §2.2 describes, on raw bytes without
// decoding: a field is a line (ending at LF) plus the following lines that
// begin with SP or HTAB; the header ends at the first empty line ("\n" or
// "\r\n"). A field is a Received field when its name is "Received" in any
// case followed by optional SP/HTAB and a colon (RFC 5322 §3.6.7, §4.5). The
// first line always starts a field, so a leading mbox "From " line stays in
// the header: an SMTP server never receives one, and an importer that does
// not want it in the identity strips it before splitting.
//
// # Received encoding
//
// The content of a received row is a sequence of records, one per removed
// Received field, in increasing order of position:
//
//	record   = uvarint(index) uvarint(length) field
//
// index is the field's position among all header fields of the raw mail,
// counting from 0 and counting the Received fields themselves; length is the
// number of bytes of field, which is the field exactly as it appeared, with
// its continuation lines and line ends. Varints are unsigned LEB128
// (encoding/binary) in their shortest form; indices strictly increase; each
// field is one whole header field. Split records Received fields only (a
// Return-Path that arrives with a mail stays in its header, its identity);
// smtpd adds its Received and, at final delivery (RFC 5321 §4.4), its
// Return-Path as records, with Parts.WithTrace, so they are part of this
// delivery and not of the mail. Readers accept a record of any field name,
// so that a later version may record another trace field without this one
// taking its rows for malformed. These rules make the encoding
// deterministic and canonical, so one delivery has exactly one received
// content. ReceivedFields and Join reject an encoding that breaks them
// (ErrBadReceived); Join also rejects one that does not fit the header (a
// position beyond its fields, a field that would merge with its neighbour).
// For a header without Received fields and an encoding of Received fields
// only, whatever Join accepts, Split gives back unchanged (FuzzJoin). A mail without Received fields has the empty
// encoding. Like every row, the received row is content-addressed: two
// deliveries with byte-identical Received fields share it.
//
// Join rebuilds the mail by walking the header's fields and emitting, at each
// recorded index, the recorded field. Field positions rather than byte offsets
// keep the encoding independent of the other fields' lengths.
//
// # Status columns
//
// A row's State has status columns and counters (SPEC §3). Every column obeys
// one rule, higher dominates: a set never lowers a column, and merging two
// copies takes each column's maximum. Counters keep one count per site; a
// merge takes each site's maximum and a counter's value is the sum over
// sites, so an increment on one site is counted once however often it is
// replicated. Both merges are semilattice joins: Merge is commutative,
// associative and idempotent, and sites converge in any replication order.
//
// The column codes make the maximum the right business answer:
//
//   - ColVerdict: EncodeVerdict packs source (bits 47..40), epoch (39..8) and
//     verdict (7..0). An operator's verdict outranks any filter verdict;
//     within a source a later epoch wins; at equal source and epoch Accept >
//     Reject > Retry (never reject a wanted mail; a definite answer replaces
//     "retry"). 0 means no verdict yet.
//   - ColAcknowledged, ColBackedUp, ColDeleted: flags, 0 or FlagSet (1).
//     Set outranks unset, so deleted outranks present.
//
// State's canonical encoding (AppendBinary, DecodeState) is documented at
// AppendBinary: names sorted, zero values left out, so equal states have
// equal bytes.
//
// # Concurrency
//
// Functions are safe for concurrent use; they share no state. A State is a
// value holding maps: it is not safe for concurrent mutation, and Merge
// returns a fresh copy while MergeInto modifies its receiver. Parts.Body
// shares memory with the raw mail given to Split; do not modify one while
// the other is in use.
package model
