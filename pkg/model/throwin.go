package model

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Attempt is the content of a throw-in row: one SMTP delivery attempt as
// smtpd saw it. smtpd writes it (Content), spamd and dbctl read it
// (ParseThrowIn). The record is "twinmx-throw-in/1" and then one
// "name: value" line a field; readers ignore lines they do not know, so
// fields can be added.
type Attempt struct {
	Session     string
	Attempt     int // the transaction's number in its session, from 1
	Time        time.Time
	Client      string // the client's address as IP:port (ParseThrowIn keeps it so; ClientIP drops the port)
	Helo        string
	TLS         string // "none", or version and cipher suite
	From        string // the envelope sender, without angle brackets after parsing
	Rcpts       []string
	Refused     []string // RCPTs refused in this transaction
	Size        int      // message bytes; 0 when no message came
	Mail        Key      // the mail row stored, when HasMail
	HasMail     bool
	Received    Key // the received row stored with it (smtpd's trace field first), when HasReceived
	HasReceived bool
	EarlyTalker bool // refused before the greeting
}

const throwInRecord = "twinmx-throw-in/1"

// Content returns the row content of t. Values are written as given, but
// for CR and LF, written as '?' (as smtpd's oneLine does): a line break
// would start a line of its own, which ParseThrowIn reads as another field
// (a "mail:" or "received:" key the attempt never stored).
func (t Attempt) Content() []byte {
	// Appended into one buffer of about the right size: smtpd writes one
	// per mail, and a string per line was most of its cost.
	n := len(throwInRecord) + 200 + len(t.Session) + len(t.Client) + len(t.Helo) + len(t.TLS) + len(t.From)
	for _, r := range t.Rcpts {
		n += len(r) + 8
	}
	for _, r := range t.Refused {
		n += len(r) + 10
	}
	b := make([]byte, 0, n)
	b = append(b, throwInRecord+"\n"...)
	line := func(name, val string) { b = append(appendOneLine(append(append(b, name...), ": "...), val), '\n') }
	line("session", t.Session)
	if t.Attempt > 0 {
		b = strconv.AppendInt(append(b, "attempt: "...), int64(t.Attempt), 10)
		b = append(b, '\n')
	}
	b = t.Time.UTC().AppendFormat(append(b, "time: "...), time.RFC3339Nano)
	b = append(b, '\n')
	line("client", t.Client)
	if t.EarlyTalker {
		line("early-talker", "yes")
		return b
	}
	line("helo", t.Helo)
	line("tls", t.TLS)
	line("from", t.From)
	for _, r := range t.Rcpts {
		line("rcpt", r)
	}
	for _, r := range t.Refused {
		line("refused", r)
	}
	if t.Size > 0 {
		b = strconv.AppendInt(append(b, "size: "...), int64(t.Size), 10)
		b = hex.AppendEncode(append(b, "\nmail: "...), t.Mail[:])
		b = append(b, '\n')
		if t.HasReceived {
			b = hex.AppendEncode(append(b, "received: "...), t.Received[:])
			b = append(b, '\n')
		}
	}
	return b
}

// appendOneLine appends s to b with every CR and LF written as '?'.
func appendOneLine(b []byte, s string) []byte {
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(b, s...)
		}
		b = append(append(b, s[:i]...), '?')
		s = s[i+1:]
	}
}

// ParseThrowIn reads a throw-in row's content. Unknown lines are ignored;
// a record without a usable time, or with a mail or received key that
// does not parse, is an error.
func ParseThrowIn(b []byte) (Attempt, error) {
	var t Attempt
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != throwInRecord {
				return t, fmt.Errorf("throw-in: unknown record %q", line)
			}
			first = false
			continue
		}
		name, val, ok := strings.Cut(line, ": ")
		if !ok {
			name, val = strings.TrimSuffix(line, ":"), ""
		}
		var err error
		switch name {
		case "session":
			t.Session = val
		case "attempt":
			t.Attempt, _ = strconv.Atoi(val)
		case "time":
			if t.Time, err = time.Parse(time.RFC3339Nano, val); err != nil {
				return t, fmt.Errorf("throw-in: time %q: %w", val, err)
			}
			// Content writes the time in UTC: its year must have four
			// digits there too, or the record would not read back.
			if y := t.Time.UTC().Year(); y < 0 || y > 9999 {
				return t, fmt.Errorf("throw-in: time %q: year %d in UTC", val, y)
			}
		case "client":
			t.Client = val
		case "helo":
			t.Helo = val
		case "tls":
			t.TLS = val
		case "from":
			t.From = strings.Trim(val, "<>")
		case "rcpt":
			t.Rcpts = append(t.Rcpts, val)
		case "refused":
			t.Refused = append(t.Refused, val)
		case "size":
			t.Size, _ = strconv.Atoi(val)
		case "early-talker":
			t.EarlyTalker = val == "yes"
		case "mail":
			if t.Mail, err = ParseKey(val); err != nil {
				return t, fmt.Errorf("throw-in: mail: %w", err)
			}
			t.HasMail = true
		case "received":
			if t.Received, err = ParseKey(val); err != nil {
				return t, fmt.Errorf("throw-in: received: %w", err)
			}
			t.HasReceived = true
		}
	}
	if err := sc.Err(); err != nil {
		return t, fmt.Errorf("throw-in: %w", err)
	}
	if first || t.Time.IsZero() {
		return t, fmt.Errorf("throw-in: no time")
	}
	return t, nil
}

// ClientIP returns the client's address without its port.
func (t Attempt) ClientIP() string {
	if h, _, err := net.SplitHostPort(t.Client); err == nil {
		return h
	}
	return t.Client
}
