// Package mimetree splits a mail into its MIME parts (RFC 2045, RFC 2046)
// for FETCH BODYSTRUCTURE, BODY[part] and BINARY[part] (RFC 9051 §6.4.5,
// §7.5.2), within fixed bounds. It is pure: no I/O, no logging.
//
// # Why not go-imap's helpers
//
// go-imap v2.0.0-beta.8's ExtractBodyStructure and ExtractBodySection
// recurse once per MIME level with no bound, each level reading through a
// go-message multipart reader stacked on its parent's (a 4 KiB buffer
// each): a mail nested 10,000 deep (667 KB) took 22 s of CPU, the time
// grows with the square of the depth, and go-imap's writer panics on a
// multipart with no parts in the middle of the FETCH response (the client
// then reads a cut answer). docs/imapd.md has the figures.
//
// # Bounds (Dovecot's defaults)
//
// A mail nests at most MaxDepth (100, Dovecot's max_nested_mime_parts)
// levels of multipart and message/rfc822 parts, and has at most MaxParts
// (10,000, max_total_mime_parts) parts, the mail itself counted. A
// multipart or message/rfc822 part that would go past a bound is not
// opened: it is an overflow leaf, reported as application/octet-stream
// with its raw size. When the part count runs out, the last part allowed
// runs to the end of its parent, so its bytes stay reachable (Dovecot
// does the same); later siblings of its ancestors are not shown. BODY[]
// is never affected: it is cut from the stored bytes.
//
// # Invariants
//
// Parts hold offsets into the mail, never copies: for every part
// Start <= BodyStart <= End, and a child lies inside its parent's body.
// Parsing reads each byte once per enclosing multipart level (at most
// MaxDepth), with recursion at most MaxDepth deep, and allocates O(parts),
// so it is bounded in time, stack and memory for any input.
//
// # Syntax accepted
//
// A boundary delimiter is "--" boundary at the start of the body or after
// LF (the CR before that LF, if any, belongs to the delimiter), followed
// by space, tab, CR, LF, "-" or the end; "--" boundary "--" closes the
// multipart. A multipart with no closing delimiter ends where its parent
// ends. A Content-Type that does not parse, or a multipart with no
// boundary parameter, is text/plain (RFC 2045 §5.2); a part with no
// Content-Type is text/plain, or message/rfc822 in multipart/digest
// (RFC 2046 §5.1.5). A header without a blank line ends at the end of its
// part. Header lines without a colon or with a bad field name are
// skipped.
package mimetree
