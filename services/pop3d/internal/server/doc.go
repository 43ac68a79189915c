// Package server is pop3d's connection state machine: it accepts POP3
// connections (plain with STLS, RFC 2595, or implicit TLS), runs each
// through the states of RFC 1939 (AUTHORIZATION, TRANSACTION, UPDATE) and
// reads and deletes mail through a Store (pkg/wire/mailbox in production).
//
// # Maildrop
//
// A login reads every mailbox of its account (aliases): the maildrop is
// their union, ordered by (local row number, mailbox key), fixed when the
// session enters TRANSACTION. Message numbers are per session; the UIDL of
// a message is the first 32 hex digits of its receive row's key, the same
// on both sites (SPEC §8), so a client that fails over to the other site
// downloads nothing twice. DELE only marks; QUIT in TRANSACTION marks the
// receive rows deleted in dbd (column "deleted", which replicates); a
// session that ends any other way changes nothing. There is no maildrop
// lock: two sessions of one account each see the mail as it was at their
// login, and a deletion by one does not stop the other from reading it.
//
// # Sizes
//
// RETR sends the stored mail with every bare LF turned into CRLF and a
// CRLF after a last line without one (see pop3.WriteMessage). LIST, STAT
// and RETR's reply report pop3.SentSize of the mail: exactly the octets
// sent before dot-stuffing (RFC 1939 §5). A size needs the mail's content
// (its line ends), so the first listing fetches each mail and caches the
// size in a receive row column (sizeColumn); later logins read it from
// the row they list anyway.
//
// # Authentication
//
// USER/PASS and AUTH PLAIN (RFC 5034) are offered only over TLS, to
// loopback clients, or everywhere with Config.AllowPlaintext (SPEC §8).
// Wrong logins, wrong passwords and accounts without a password get the
// same reply, no sooner than Config.AuthFailDelay after the command
// arrived. After Config.MaxAuthFailures failures from one IPv4 address or
// IPv6 /64 network within Config.AuthFailWindow, further logins from it
// are refused unchecked.
// At most mailbox.DefaultMaxChecks password checks (argon2id, 64 MiB
// each) run at once: the store queues the others.
//
// # Concurrency
//
// One goroutine owns each connection and all of its state; the Server
// tracks them for Close and Shutdown. A panic in a command is recovered,
// logged with its stack, counted, and ends that connection only.
package server
