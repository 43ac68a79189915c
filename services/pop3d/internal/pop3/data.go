package pop3

import (
	"bufio"
	"bytes"
)

// SentSize returns the octets of msg that WriteMessage sends for RETR: msg
// with every bare LF counted as CRLF and the CRLF added after a last line
// that has no line end, before dot-stuffing and without the terminating
// line. It is the size LIST and STAT report (RFC 1939 §5: the exact size
// of the message as sent, which clients compare with what they receive).
func SentSize(msg []byte) int64 {
	n := int64(len(msg) + bareLFs(msg))
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		n += 2
	}
	return n
}

// bareLFs counts the LFs of msg not preceded by a CR.
func bareLFs(msg []byte) int {
	n := 0
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return n
		}
		if i+j == 0 || msg[i+j-1] != '\r' {
			n++
		}
		i += j + 1
	}
}

// WriteMessage writes msg as the body of a multi-line response (RFC 1939
// §3): every line ends in CRLF (a bare LF becomes CRLF, every other octet,
// a bare CR too, is sent as it is), a line that starts with "." gets
// another one, a last line without a line end gets a CRLF, and ".CRLF"
// ends it. With bodyLines ≥ 0 it sends only the header section, the empty
// line after it and the first bodyLines lines of the body (TOP, RFC 1939
// §7); with bodyLines < 0 the whole message (RETR). It returns the message
// octets written (for RETR what SentSize counts) and the first write error.
func WriteMessage(w *bufio.Writer, msg []byte, bodyLines int) (int64, error) {
	var sent int64
	inHeader := true
	for len(msg) > 0 {
		if !inHeader && bodyLines >= 0 {
			if bodyLines == 0 {
				break
			}
			bodyLines--
		}
		var line []byte
		end := bytes.IndexByte(msg, '\n')
		complete := end >= 0
		if complete {
			line, msg = msg[:end], msg[end+1:]
			line = bytes.TrimSuffix(line, []byte("\r"))
		} else {
			line, msg = msg, nil
		}
		if inHeader && len(line) == 0 {
			inHeader = false
		}
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		if _, err := w.WriteString("\r\n"); err != nil {
			return sent, err
		}
		sent += int64(len(line)) + 2
	}
	_, err := w.WriteString(".\r\n")
	return sent, err
}
