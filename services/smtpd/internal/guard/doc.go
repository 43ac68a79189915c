// Package guard sits between the TCP socket and go-smtp (v0.26.0; its
// DATA reader is v0.25.1's, where the holes were found) and
// closes the holes go-smtp leaves at the byte-stream level. Listener wraps
// a net.Listener and enforces connection limits; each accepted Conn is a
// net.Conn that sees every byte in both directions.
//
// # What it fixes
//
//   - SMTP smuggling (RFC 5321 §2.3.8, §4.1.1.4): go-smtp passes bare CR,
//     bare LF and NUL inside DATA, misses the end in "a\r\r\n.\r\n" and
//     loses bytes in "\r\n.\rX". The guard parses DATA strictly; the data
//     ends only at CRLF "." CRLF (the 354 reply counts as a line start).
//     Clean data passes through unchanged. On the first violation the
//     guard stops passing bytes, discards up to the strict end and then
//     feeds go-smtp "\r\n.\r\n"; Conn.DataViolation tells the session to
//     answer 550 5.6.0. Bytes after the end marker are never handed over
//     in the same Read, so pipelined commands stay commands.
//   - go-smtp issue #196: after a read error in DATA it keeps parsing the
//     body as commands. The guard closes the connection on any read error
//     or timeout in DATA and fails every later Read.
//   - Line limits: go-smtp's 2000-byte limit also cuts long body lines. The
//     guard limits command lines only (Config.CommandLineMax); go-smtp's
//     Server.MaxLineLength must be set to 0.
//   - CHUNKING: go-smtp always offers it. The guard removes it from the
//     EHLO reply and ends a session that sends BDAT anyway.
//   - STARTTLS: go-smtp's Server.TLSConfig must stay nil. The guard offers
//     STARTTLS itself, discards bytes pipelined after the command
//     (CVE-2011-0411), handshakes with a deadline and then feeds go-smtp
//     "RSET" (its reply is swallowed) so that no pre-TLS transaction
//     survives. go-smtp keeps the pre-TLS HELO name; the session should
//     require a new EHLO if it cares (RFC 3207 §4.2).
//   - Defences: early talker (postscreen pregreet: a client that speaks
//     within GreetPause is rejected with 554), connection limits per IP
//     and in total, command count, error count (with a tarpit: every
//     reply waits ErrorDelay once SoftErrors errors have come), non-SMTP
//     command lines (HTTP, header fields, control bytes: closed at once),
//     idle (per command line)/data (per read)/session/write timeouts, all
//     answered with Postfix-style replies.
//
// # Invariants
//
//   - In command mode each Read returns at most one line (through its LF),
//     so go-smtp's bufio never reads ahead past a command: the guard always
//     knows which line go-smtp is acting on and can switch to DATA mode
//     before the first body byte is read.
//   - In DATA mode the bytes handed to go-smtp never leave its dot reader
//     in its CR or dot state (see dataParser), so the end marker the guard
//     feeds after a violation always ends go-smtp's reader.
//   - Every connection releases its Listener slot exactly once (Close).
//
// # Capture
//
// Each Conn records the transcript (Conn.Capture, ParseCapture): client
// and server chunks with their time offset, up to Config.CaptureMax bytes;
// bytes beyond are counted as Elided. Encoding, version 1:
//
//	twinmx-capture/1 LF
//	DIR SP AT-MS SP LEN SP ELIDED LF DATA LF    (repeated)
//
// DIR is 'C' (client), 'S' (server) or 'T' (STARTTLS handshake done; later
// records are TLS plaintext). A replay sends the C records in order and
// waits for the server's reply in between. Credentials are redacted: the
// initial response of AUTH and the SASL responses after it are replaced
// by a mark that the server answers as it answered them (see redactAuth).
//
// # Use with go-smtp
//
//	l, err := guard.NewListener(tcpListener, cfg)
//	s := smtp.NewServer(backend)
//	s.MaxLineLength = 0 // the guard limits command lines
//	s.TLSConfig = nil   // the guard does STARTTLS
//	go s.Serve(l)
//
// In Backend.NewSession, c.Conn().(*guard.Conn) gives the guard's view;
// in Session.Data, read to EOF and then check DataViolation.
//
// # Concurrency
//
// See Conn. go-smtp's one goroutine per connection calls Read and Write;
// accessors and Close are safe from any goroutine.
package guard
