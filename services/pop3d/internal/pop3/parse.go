package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// MaxLine is the longest command line Parse and ReadLine accept, in octets
// without the line end. RFC 2449 §4 limits a command to 255 octets with its
// CRLF; the slack is for clients that send a long AUTH PLAIN initial
// response or password anyway (RFC 5034 §4 lets a response line be longer).
const MaxLine = 512

// MaxNumber bounds a message number or TOP line count.
const MaxNumber = 1<<31 - 1

// Verb is a POP3 command keyword, upper case.
type Verb string

// The commands pop3d knows (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).
const (
	USER Verb = "USER"
	PASS Verb = "PASS"
	AUTH Verb = "AUTH"
	STLS Verb = "STLS"
	CAPA Verb = "CAPA"
	QUIT Verb = "QUIT"
	STAT Verb = "STAT"
	LIST Verb = "LIST"
	RETR Verb = "RETR"
	DELE Verb = "DELE"
	NOOP Verb = "NOOP"
	RSET Verb = "RSET"
	TOP  Verb = "TOP"
	UIDL Verb = "UIDL"
)

// Verbs lists every known verb, for metrics labels.
var Verbs = []Verb{USER, PASS, AUTH, STLS, CAPA, QUIT, STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL}

// Command is one parsed command line.
type Command struct {
	Verb Verb
	// Msg is the message number of LIST, UIDL (0: none given, list all),
	// RETR, DELE and TOP (always ≥ 1).
	Msg int
	// Lines is TOP's body line count.
	Lines int
	// Arg is USER's name, PASS's password (the rest of the line, spaces
	// included) or AUTH's mechanism in upper case ("" for a bare AUTH,
	// which lists the mechanisms).
	Arg string
	// Initial is AUTH's initial response (RFC 5034 §4): base64, or "=" for
	// an empty one; HasInitial tells whether one was given.
	Initial    string
	HasInitial bool
}

// ErrUnknown is returned by Parse for a keyword it does not know.
var ErrUnknown = errors.New("pop3: unknown command")

// ErrTooLong is returned by Parse and ReadLine for a line longer than MaxLine.
var ErrTooLong = errors.New("pop3: line too long")

// SyntaxError is a known command with malformed arguments.
type SyntaxError struct {
	Verb Verb
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("pop3: %s: %s", e.Verb, e.Msg) }

// Parse parses one command line, given without its line end.
func Parse(line []byte) (Command, error) {
	if len(line) > MaxLine {
		return Command{}, ErrTooLong
	}
	word, rest, _ := bytes.Cut(line, []byte(" "))
	if len(word) < 3 || len(word) > 4 || !isAlpha(word) {
		return Command{}, ErrUnknown
	}
	v := Verb(strings.ToUpper(string(word)))
	if v == PASS {
		// RFC 1939 §7: the password is the rest of the line and may hold spaces.
		if len(rest) == 0 || bytes.ContainsAny(rest, "\x00\r\n") {
			return Command{}, &SyntaxError{v, "want PASS password"}
		}
		return Command{Verb: v, Arg: string(rest)}, nil
	}
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return Command{}, &SyntaxError{v, "control character in command"}
		}
	}
	args := strings.Fields(string(rest))
	c := Command{Verb: v}
	switch v {
	case QUIT, STAT, NOOP, RSET, CAPA, STLS:
		if len(args) != 0 {
			return Command{}, &SyntaxError{v, "takes no argument"}
		}
	case LIST, UIDL:
		switch len(args) {
		case 0:
		case 1:
			n, err := number(args[0], 1)
			if err != nil {
				return Command{}, &SyntaxError{v, "bad message number"}
			}
			c.Msg = n
		default:
			return Command{}, &SyntaxError{v, "want at most one message number"}
		}
	case RETR, DELE:
		if len(args) != 1 {
			return Command{}, &SyntaxError{v, "want one message number"}
		}
		n, err := number(args[0], 1)
		if err != nil {
			return Command{}, &SyntaxError{v, "bad message number"}
		}
		c.Msg = n
	case TOP:
		if len(args) != 2 {
			return Command{}, &SyntaxError{v, "want TOP msg lines"}
		}
		n, err := number(args[0], 1)
		if err != nil {
			return Command{}, &SyntaxError{v, "bad message number"}
		}
		l, err := lineCount(args[1])
		if err != nil {
			return Command{}, &SyntaxError{v, "bad line count"}
		}
		c.Msg, c.Lines = n, l
	case USER:
		if len(args) != 1 || len(args[0]) > 255 {
			return Command{}, &SyntaxError{v, "want USER name"}
		}
		c.Arg = args[0]
	case AUTH:
		if len(args) > 2 {
			return Command{}, &SyntaxError{v, "want AUTH mechanism [initial-response]"}
		}
		if len(args) >= 1 {
			if !isMechanism(args[0]) {
				return Command{}, &SyntaxError{v, "bad mechanism name"}
			}
			c.Arg = strings.ToUpper(args[0])
		}
		if len(args) == 2 {
			if args[1] != "=" && !isBase64(args[1]) {
				return Command{}, &SyntaxError{v, "initial response is not base64"}
			}
			c.Initial, c.HasInitial = args[1], true
		}
	default:
		return Command{}, ErrUnknown
	}
	return c, nil
}

// ReadLine reads one line from r and returns it without its line end (CRLF
// or a bare LF). For a line longer than MaxLine (or than r's buffer) it
// returns ErrTooLong at once, without reading to the line's end: the
// caller is out of step and must close the connection. The slice is valid
// until the next read from r, whose buffer must exceed MaxLine+2 octets.
func ReadLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, ErrTooLong
	}
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	if len(line) > MaxLine {
		return nil, ErrTooLong
	}
	return line, nil
}

func number(s string, lo int) (int, error) {
	if len(s) == 0 || len(s) > 10 {
		return 0, errors.New("bad number")
	}
	// int64: ten digits overflow a 32-bit int, and the wrapped value
	// could name another message (4294967298 as 2).
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad number")
		}
		n = n*10 + int64(s[i]-'0')
	}
	if n < int64(lo) || n > MaxNumber {
		return 0, errors.New("number out of range")
	}
	return int(n), nil
}

// lineCount parses TOP's line count. RFC 1939 §7 asks for a non-negative
// number and sets no bound: a count past the body's end sends the whole
// body, so any count of at least MaxNumber (the line bounds its digits)
// reads as MaxNumber, more lines than a mail can hold. Refusing it, as
// pop3d did, answered -ERR to a valid command.
func lineCount(s string) (int, error) {
	if len(s) == 0 {
		return 0, errors.New("bad number")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad number")
		}
		if n = n*10 + int64(s[i]-'0'); n > MaxNumber {
			n = MaxNumber // no overflow of n however many digits follow
		}
	}
	return int(n), nil
}

func isAlpha(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// isMechanism: RFC 4422 §3.1 SASL mechanism names, 1-20 of [A-Z0-9-_].
func isMechanism(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func isBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return len(s) > 0
}
