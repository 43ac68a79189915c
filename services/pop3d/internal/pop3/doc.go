// Package pop3 holds the POP3 grammar as pure functions, with no
// connection, logger or store: Parse turns one command line into a
// Command (RFC 1939 §3-§7, CAPA of RFC 2449, AUTH of RFC 5034, STLS of
// RFC 2595), and WriteMessage / SentSize encode a mail as a multi-line
// response (CRLF line ends, dot-stuffing, RFC 1939 §3).
//
// Invariants:
//   - Every input is bounded: Parse refuses lines longer than MaxLine
//     octets; numeric arguments are bounded by MaxNumber.
//   - WriteMessage sends every octet of the mail unchanged except a bare
//     LF, which becomes CRLF; SentSize(m) is the number of octets of m that
//     WriteMessage sends before the terminating ".CRLF", without
//     dot-stuffing and without the CRLF added to a mail that does not end
//     in a line end. LIST, STAT and RETR agree on that figure.
//
// The package is safe for concurrent use: it has no state.
package pop3
