package guard

import (
	"bytes"
	"fmt"
)

// Reply-side processing. go-smtp writes each reply line with its own Write
// (textproto.Writer.PrintfLine), but the guard does not rely on that: it
// reassembles lines from whatever chunks arrive.

// replyLine is one parsed reply line.
type replyLine struct {
	code  int    // 100..599, or 0 if the line does not start with a code
	final bool   // "250 text" (or a bare "250") rather than "250-text"
	text  []byte // after the separator, without CRLF
}

// parseReplyLine parses one reply line including its line ending.
func parseReplyLine(line []byte) replyLine {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 {
		return replyLine{}
	}
	code := 0
	for _, d := range line[:3] {
		if d < '0' || d > '9' {
			return replyLine{}
		}
		code = code*10 + int(d-'0')
	}
	switch {
	case len(line) == 3:
		return replyLine{code: code, final: true}
	case line[3] == ' ':
		return replyLine{code: code, final: true, text: line[4:]}
	case line[3] == '-':
		return replyLine{code: code, text: line[4:]}
	}
	return replyLine{}
}

// processReplies takes a chunk written by go-smtp and returns the bytes to
// send, plus a 421 reply to send after them when the error limit is
// exceeded.
// REQUIRES: wmu held.
func (c *Conn) processReplies(p []byte) (out []byte, closeReply string) {
	c.wline = append(c.wline, p...)
	rest := c.wline
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		var cr string
		out, cr = c.replyLineLocked(out, rest[:i+1])
		if cr != "" {
			closeReply = cr
		}
		rest = rest[i+1:]
	}
	if len(rest) > replyBufMax {
		// Not a reply line we understand; pass it on rather than grow.
		out = append(out, rest...)
		rest = nil
	}
	c.wline = append(c.wline[:0], rest...)
	return out, closeReply
}

// replyLineLocked handles one complete reply line.
// REQUIRES: wmu held.
func (c *Conn) replyLineLocked(out, line []byte) ([]byte, string) {
	r := parseReplyLine(line)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.swallow {
		// The reply to the RSET the guard injected after STARTTLS.
		if r.final {
			c.mu.swallow = false
		}
		return out, ""
	}
	if c.mu.expectEHLO {
		c.ehloHold = append(c.ehloHold, line...)
		if !r.final && len(c.ehloHold) <= replyBufMax {
			return out, ""
		}
		c.mu.expectEHLO = false
		out = append(out, rewriteEHLO(c.ehloHold, c.cfg.TLS != nil && c.mu.tls == nil)...)
		c.ehloHold = c.ehloHold[:0]
	} else {
		out = append(out, recode(line)...)
	}
	if !r.final {
		return out, ""
	}
	return out, c.countReplyLocked(r)
}

// countReplyLocked applies a final reply line, go-smtp's or the guard's
// own, to the session state: the greeting it answers, DATA mode after
// 354, SASL after 334, and the error count. It returns the 421 reply to
// send after it when the reply is one error too many, else "".
// REQUIRES: mu held.
func (c *Conn) countReplyLocked(r replyLine) string {
	if c.mu.greeting != "" {
		// go-smtp reads the next line only after this reply, so it
		// answers the greeting passed last.
		if r.code == 250 {
			c.mu.extended = c.mu.greeting == "EHLO"
		}
		c.mu.greeting = ""
	}
	switch {
	case r.code == 354:
		c.mu.mode = modeData
		c.mu.dataStart = true
		c.mu.violation = ""
		// The command and error budgets count afresh only once a mail is
		// stored (DataStored), not here: a DATA whose message is refused
		// moved no mail, and a client could end each round of probes
		// with one (a bare LF costs it nothing) to escape MaxErrors and
		// the tarpit for ever.
	case r.code == 334:
		c.mu.expectSASL = true
	case r.code >= 400 && r.code < 600 && !recipientsLater(r):
		c.mu.errors++
		c.mu.errorsSinceData++
		if c.mu.errorsSinceData > c.cfg.MaxErrors {
			return fmt.Sprintf("421 4.7.0 %s Error: too many errors\r\n", c.cfg.Hostname)
		}
	}
	return ""
}

// recipientsLater reports a 452 4.5.3 reply: too many recipients (go-smtp
// past Server.MaxRecipients, RFC 5321 §4.5.3.1.10) or a recipient to be
// sent in another transaction (smtpd's policy grouping). It is no error of
// the client, which goes on to DATA with the recipients taken and sends
// the rest later: counted, a mail to more than MaxRecipients + MaxErrors
// addresses got 421 before its DATA, at every retry. Postfix does not
// count these either (smtpd_recipient_overshoot_limit); MaxCommands still
// bounds them.
func recipientsLater(r replyLine) bool {
	return r.code == 452 && bytes.HasPrefix(r.text, []byte("4.5.3 "))
}

// recodes are go-smtp replies whose code RFC 5321 gives otherwise, with
// the code they get. A command out of order: go-smtp says 502 (command
// not implemented), §4.2.4 and §4.3.2 say 503 (bad sequence of commands).
// An unknown MAIL or RCPT parameter: go-smtp says 500 (syntax error,
// command unrecognized), §4.1.1.11 says 555, which a sender such as
// Postfix reads as "drop the parameter", not "the command is wrong".
// A malformed AUTH= value is a syntax error in a parameter: 501. A line
// go-smtp cannot split into a four-letter verb and its arguments ("FOO
// bar", "AB") is a command not recognized: 500, where go-smtp
// says 501 (syntax error in parameters).
var recodes = []struct {
	line []byte
	code string
}{
	{[]byte("502 5.5.1 Please introduce yourself first."), "503"},
	{[]byte("502 5.5.1 Missing MAIL FROM command."), "503"},
	{[]byte("502 5.5.1 Missing RCPT TO command."), "503"},
	{[]byte("500 5.5.4 Unknown MAIL FROM argument"), "555"},
	{[]byte("500 5.5.4 Unknown RCPT TO argument"), "555"},
	{[]byte("500 5.5.4 Malformed AUTH parameter"), "501"},
	{[]byte("501 5.5.2 Bad command"), "500"},
}

// recode returns a reply line of go-smtp's with the code RFC 5321 gives
// it (recodes), any other line as it is.
func recode(line []byte) []byte {
	for _, r := range recodes {
		if bytes.HasPrefix(line, r.line) {
			return append([]byte(r.code), line[3:]...)
		}
	}
	return line
}

// rewriteEHLO rewrites a complete EHLO reply: it removes CHUNKING (go-smtp
// always offers it and the guard refuses BDAT) and any STARTTLS, then adds
// STARTTLS when offerTLS. Replies other than 250 pass unchanged.
func rewriteEHLO(reply []byte, offerTLS bool) []byte {
	lines := bytes.SplitAfter(reply, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 || parseReplyLine(lines[0]).code != 250 {
		return reply
	}
	var texts [][]byte
	for i, l := range lines {
		r := parseReplyLine(l)
		if r.code != 250 {
			return reply // not a well-formed reply; leave it alone
		}
		kw, _, _ := bytes.Cut(r.text, []byte{' '})
		if i > 0 && (bytes.EqualFold(kw, []byte("CHUNKING")) || bytes.EqualFold(kw, []byte("STARTTLS"))) {
			continue
		}
		texts = append(texts, r.text)
	}
	if offerTLS {
		texts = append(texts, []byte("STARTTLS"))
	}
	var b []byte
	for i, t := range texts {
		sep := byte('-')
		if i == len(texts)-1 {
			sep = ' '
		}
		b = append(b, '2', '5', '0', sep)
		b = append(b, t...)
		b = append(b, '\r', '\n')
	}
	return b
}
