package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// The mbox format (RFC 4155, with the mboxrd quoting that Dovecot, Postfix's
// local(8) and mutt read): each message starts with a separator line
// "From SENDER DATE" that is not part of the mail, and a blank line ends
// each message. mboxrd writers prefix every mail line that matches ^>*From
// with one more '>', so the reader removes one '>' from every line that
// matches ^>+From . mboxo writers quoted only "From " lines and left
// ">From " as it was: an mboxo file is read with mboxo quoting (">From "
// loses its '>', ">>From " stays).
//
// Byte exactness: the writer puts "\n" after every mail, whatever the mail
// ends with, and the reader drops exactly that "\n" (or "\r\n" after a CRLF
// separator line, as in an mbox written on Windows). So writing then reading
// gives back every mail byte for byte: CRLF or LF line ends, a missing
// final line end, "From " lines in the body.

// mboxQuoting selects how "From " lines inside a mail are unquoted.
type mboxQuoting int

const (
	mboxrd mboxQuoting = iota // ^>+From  loses one '>' (default)
	mboxo                     // only ^>From  loses its '>'
)

func parseMboxQuoting(s string) (mboxQuoting, error) {
	switch s {
	case "", "mboxrd":
		return mboxrd, nil
	case "mboxo":
		return mboxo, nil
	}
	return 0, fmt.Errorf("unknown mbox quoting %q (want mboxrd or mboxo)", s)
}

// mboxMessage is one message read from an mbox.
type mboxMessage struct {
	Line   int       // line number of its separator line (1-based)
	Sender string    // the separator's envelope sender ("" if none)
	Date   time.Time // the separator's date; zero if it does not parse
	Raw    []byte    // the mail, unquoted, without separator and final blank line
	Err    error     // why this message cannot be imported
}

// errMboxTooLarge is the Err of a message over the reader's size bound.
var errMboxTooLarge = errors.New("message too large")

// maxSizeSlack is the room the reader keeps beyond a message's size bound
// for the line end that ends it in the mbox ("\r\n" at most), which is
// not part of the mail.
const maxSizeSlack = 2

// maxFromLine bounds the part of a separator line that is kept.
const maxFromLine = 4096

// mboxReader reads an mbox one message at a time. Every input is bounded:
// a message by maxSize (bytes beyond are skipped and the message reported
// too large), a separator line by maxFromLine. It never fails on content:
// any byte string is an mbox, some of whose messages may carry an Err.
// Not safe for concurrent use.
type mboxReader struct {
	r       *bufio.Reader
	quoting mboxQuoting
	maxSize int

	line int        // lines read so far
	sep  *separator // the separator of the message being read; nil before the first
	eof  bool
}

// separator is a parsed "From " line.
type separator struct {
	msg  mboxMessage // Line, Sender, Date
	crlf bool        // the line ended in CRLF
}

func newMboxReader(r io.Reader, q mboxQuoting, maxSize int) *mboxReader {
	return &mboxReader{r: bufio.NewReaderSize(r, 64<<10), quoting: q, maxSize: maxSize}
}

// Next returns the next message, or io.EOF after the last. Any other error
// is a read error of the underlying reader.
func (m *mboxReader) Next() (mboxMessage, error) {
	for !m.eof || m.sep != nil {
		msg, ok, err := m.readMessage()
		if err != nil || ok {
			return msg, err
		}
	}
	return mboxMessage{}, io.EOF
}

// readMessage reads the lines after the current separator up to the next
// separator or the end. ok is false for empty text before the first
// separator.
func (m *mboxReader) readMessage() (msg mboxMessage, ok bool, err error) {
	cur := m.sep
	m.sep = nil
	var buf bytes.Buffer
	tooLarge, atStart := false, true
	// keep appends n bytes to the message, or marks it too large: the
	// reader never holds more than maxSize bytes of one message, and the
	// line end after it (maxSizeSlack), which finish drops: a mail of
	// exactly maxSize bytes is not too large.
	keep := func(n int) bool {
		if buf.Len()+n-maxSizeSlack > m.maxSize { // not maxSize+slack: --max-size may be MaxInt
			tooLarge = true
		}
		return !tooLarge
	}
	for {
		counted := false // this line is counted in m.line
		if atStart {
			gt, from, err := m.lineStart()
			if err != nil {
				return mboxMessage{}, false, fmt.Errorf("read mbox line %d: %w", m.line+1, err)
			}
			if gt == 0 && from {
				m.line++
				frag, rerr := m.r.ReadSlice('\n')
				if m.sep, err = m.readSeparator(frag, rerr); err != nil {
					return mboxMessage{}, false, err
				}
				msg, ok = m.finish(cur, buf.Bytes(), tooLarge)
				return msg, ok, nil
			}
			if gt > 0 {
				m.line++
				counted = true
				if from && (m.quoting == mboxrd || gt == 1) {
					gt-- // the quoting '>'
				}
				if keep(gt) {
					for range gt {
						buf.WriteByte('>')
					}
				}
			}
		}
		frag, rerr := m.r.ReadSlice('\n')
		if len(frag) > 0 {
			if atStart && !counted {
				m.line++
			}
			if keep(len(frag)) {
				buf.Write(frag)
			}
			atStart = frag[len(frag)-1] == '\n'
		}
		switch {
		case rerr == nil, errors.Is(rerr, bufio.ErrBufferFull):
		case errors.Is(rerr, io.EOF):
			m.eof = true
			msg, ok = m.finish(cur, buf.Bytes(), tooLarge)
			return msg, ok, nil
		default:
			return mboxMessage{}, false, fmt.Errorf("read mbox line %d: %w", m.line, rerr)
		}
	}
}

// lineStart consumes the '>' bytes that begin a line and returns how many
// there were and whether "From " follows them. It reads them one by one
// rather than looking at the line's first ReadSlice fragment: a run of '>'
// can be longer than the buffer, and whether the line is quoted is only
// known where the run ends (the writer quotes such a line too).
func (m *mboxReader) lineStart() (gt int, from bool, err error) {
	for {
		b, err := m.r.Peek(1)
		if errors.Is(err, io.EOF) {
			return gt, false, nil
		}
		if err != nil {
			return gt, false, err
		}
		if b[0] != '>' {
			break
		}
		m.r.Discard(1) // cannot fail: the byte is buffered
		gt++
	}
	p, err := m.r.Peek(len("From "))
	if err != nil && !errors.Is(err, io.EOF) {
		return gt, false, err
	}
	return gt, string(p) == "From ", nil
}

// readSeparator reads the rest of a separator line whose first fragment is
// frag (rerr: what ReadSlice returned with it) and parses it.
func (m *mboxReader) readSeparator(frag []byte, rerr error) (*separator, error) {
	line := append([]byte(nil), frag[:min(len(frag), maxFromLine)]...)
	for errors.Is(rerr, bufio.ErrBufferFull) {
		frag, rerr = m.r.ReadSlice('\n')
		if room := maxFromLine - len(line); room > 0 {
			line = append(line, frag[:min(len(frag), room)]...)
		}
	}
	switch {
	case rerr == nil:
	case errors.Is(rerr, io.EOF):
		m.eof = true
	default:
		return nil, fmt.Errorf("read mbox line %d: %w", m.line, rerr)
	}
	sep := &separator{msg: mboxMessage{Line: m.line}, crlf: bytes.HasSuffix(line, []byte("\r\n"))}
	// Fields are split at ASCII white space only, as the writer (and
	// mutt, Dovecot) see them: a sender with, say, a no-break space in it
	// is one word, and the date after it must stay the date.
	fields := strings.FieldsFunc(string(line[len("From "):]), func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	if len(fields) > 0 {
		sep.msg.Sender = fields[0]
		sep.msg.Date = parseMboxDate(fields[1:])
	}
	return sep, nil
}

// finish makes the message of separator cur from its lines; cur nil is the
// text before the first separator, which is an error unless blank.
func (m *mboxReader) finish(cur *separator, raw []byte, tooLarge bool) (mboxMessage, bool) {
	if cur == nil {
		if len(bytes.TrimSpace(raw)) == 0 && !tooLarge {
			return mboxMessage{}, false
		}
		return mboxMessage{Line: 1, Err: errors.New(`text before the first "From " line (not an mbox?)`)}, true
	}
	msg := cur.msg
	switch {
	case cur.crlf && bytes.HasSuffix(raw, []byte("\r\n")):
		raw = raw[:len(raw)-2]
	case bytes.HasSuffix(raw, []byte("\n")):
		raw = raw[:len(raw)-1]
	}
	switch {
	case tooLarge || len(raw) > m.maxSize:
		msg.Err = fmt.Errorf("%w (over %d bytes)", errMboxTooLarge, m.maxSize)
	case len(raw) == 0:
		msg.Err = errors.New("empty message")
	default:
		msg.Err = checkMail(raw)
	}
	if msg.Err == nil {
		msg.Raw = append(make([]byte, 0, len(raw)), raw...)
	}
	return msg, true
}

// checkMail reports whether raw can be a mail: it must start with a header
// field (RFC 5322 §2.2: printable ASCII but ':' for the name, then ':').
// Anything else — a binary file, a truncated export — is refused rather
// than stored as a mail no client can show.
func checkMail(raw []byte) error {
	i := 0
	for i < len(raw) && raw[i] > ' ' && raw[i] < 0x7f && raw[i] != ':' {
		i++
	}
	if i == 0 {
		return errors.New("does not start with a header field")
	}
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
		i++
	}
	if i == len(raw) || raw[i] != ':' {
		return errors.New("does not start with a header field")
	}
	return nil
}

// mboxDateLayout is the asctime date of a separator line, in UTC.
const mboxDateLayout = "Mon Jan _2 15:04:05 2006"

// parseMboxDate parses the date fields of a separator line: asctime,
// optionally with a zone name or offset before or after the year.
func parseMboxDate(fields []string) time.Time {
	s := strings.Join(fields, " ")
	for _, layout := range []string{"Mon Jan 2 15:04:05 2006", "Mon Jan 2 15:04:05 2006 -0700",
		"Mon Jan 2 15:04:05 MST 2006", "Mon Jan 2 15:04:05 -0700 2006", "Mon Jan 2 15:04 2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// maxMboxSender bounds the sender written on a separator line: the reader
// keeps maxFromLine bytes of the line, and the date after the sender must
// be among them. (An SMTP path is at most 256 bytes, RFC 5321 §4.5.3.1.3;
// a longer Return-Path comes from the mail, not from a delivery.)
const maxMboxSender = 1000

// writeMbox appends one mail to an mbox: the separator line with sender
// (MAILER-DAEMON if it is empty, not one word or over maxMboxSender bytes)
// and date, the mail with mboxrd quoting, and the blank line that ends it.
func writeMbox(w *bufio.Writer, sender string, date time.Time, raw []byte) {
	if sender == "" || len(sender) > maxMboxSender || strings.ContainsFunc(sender, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		sender = "MAILER-DAEMON"
	}
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	fmt.Fprintf(w, "From %s %s\n", sender, date.UTC().Format(mboxDateLayout))
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, '\n') + 1
		if end == 0 {
			end = len(raw)
		}
		if bytes.HasPrefix(bytes.TrimLeft(raw[:end], ">"), []byte("From ")) {
			w.WriteByte('>')
		}
		w.Write(raw[:end])
		raw = raw[end:]
	}
	w.WriteByte('\n')
}
