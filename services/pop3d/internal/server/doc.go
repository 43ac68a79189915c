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
// RETR sends the stored mail with every bare LF turned into CRLF (see
// pop3.WriteMessage). LIST and STAT report Store.Size (the stored octets
// after the header filter), which is exactly what RETR sends for every mail
// smtpd accepted (smtpd refuses bare LFs). For a mail with bare LFs (an
// import), the figure is corrected to pop3.SentSize the first time the
// session fetches it, and is exact from then on.
//
// # Authentication
//
// USER/PASS and AUTH PLAIN (RFC 5034) are offered only over TLS, to
// loopback clients, or everywhere with Config.AllowPlaintext (SPEC §8).
// Wrong logins, wrong passwords and accounts without a password get the
// same reply, no sooner than Config.AuthFailDelay after the command
// arrived. After Config.MaxAuthFailures failures from one IP within
// Config.AuthFailWindow, further logins from it are refused unchecked.
// At most mailbox.DefaultMaxChecks password checks (argon2id, 64 MiB
// each) run at once: the store queues the others.
//
// # Concurrency
//
// One goroutine owns each connection and all of its state; the Server
// tracks them for Close and Shutdown. A panic in a command is recovered,
// logged with its stack, counted, and ends that connection only.
package server
