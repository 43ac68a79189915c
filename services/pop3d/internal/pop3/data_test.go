package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

func TestWriteMessage(t *testing.T) {
	mail := "From: a\r\nSubject: s\r\n\r\nline 1\r\n.dot\r\nline 3\r\nline 4\r\n"
	tests := []struct {
		name  string
		in    string
		lines int
		want  string
	}{
		{"retr", mail, -1, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..dot\r\nline 3\r\nline 4\r\n.\r\n"},
		{"top 0", mail, 0, "From: a\r\nSubject: s\r\n\r\n.\r\n"},
		{"top 2", mail, 2, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..dot\r\n.\r\n"},
		{"top beyond the end", mail, 100, "From: a\r\nSubject: s\r\n\r\nline 1\r\n..dot\r\nline 3\r\nline 4\r\n.\r\n"},
		{"bare LF becomes CRLF", "A: 1\n\nx\ny", -1, "A: 1\r\n\r\nx\r\ny\r\n.\r\n"},
		{"bare CR stays", "A: 1\r\n\r\nx\ry\r\n", -1, "A: 1\r\n\r\nx\ry\r\n.\r\n"},
		{"CR before the end", "A: 1\r\n\r\nx\r", -1, "A: 1\r\n\r\nx\r\r\n.\r\n"},
		{"lone dot line", "A: 1\r\n\r\n.\r\n", -1, "A: 1\r\n\r\n..\r\n.\r\n"},
		{"header only, top", "A: 1\r\nB: 2\r\n", 0, "A: 1\r\nB: 2\r\n.\r\n"},
		{"empty", "", -1, ".\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w := bufio.NewWriter(&b)
			n, err := WriteMessage(w, []byte(tt.in), tt.lines)
			w.Flush()
			if err != nil || b.String() != tt.want {
				t.Fatalf("WriteMessage(%q, %d) wrote %q, %v; want %q", tt.in, tt.lines, b.String(), err, tt.want)
			}
			if tt.lines < 0 && n != SentSize([]byte(tt.in)) {
				t.Fatalf("WriteMessage(%q) = %d octets, SentSize = %d", tt.in, n, SentSize([]byte(tt.in)))
			}
			// The count is the octets a client keeps: everything before
			// the terminating line, less one per stuffed dot (catalog
			// item 55; the final CRLF added to a mail without one counts).
			data := strings.TrimSuffix(tt.want, ".\r\n")
			kept := len(data) - strings.Count("\n"+data, "\n..")
			if tt.lines < 0 && n != int64(kept) {
				t.Fatalf("WriteMessage(%q) = %d octets, the client keeps %d", tt.in, n, kept)
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errors.New("broken pipe")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteMessageError(t *testing.T) {
	w := bufio.NewWriterSize(&failWriter{n: 10}, 16)
	if _, err := WriteMessage(w, []byte(strings.Repeat("line\r\n", 100)), -1); err == nil {
		t.Fatal("WriteMessage to a broken connection returned no error")
	}
}

// FuzzWriteMessage: what a client un-stuffs (net/textproto's DotReader) is
// the mail with bare LFs as CRLF (and a CRLF after a last line without one).
func FuzzWriteMessage(f *testing.F) {
	f.Add([]byte("A: 1\r\n\r\n.x\r\n..\r\n.\r\n"))
	f.Add([]byte("a\nb\r\nc\rd"))
	f.Add([]byte("\r\r\n\n."))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		n, err := WriteMessage(w, msg, -1)
		if err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if n != SentSize(msg) {
			t.Fatalf("WriteMessage sent %d octets, SentSize says %d", n, SentSize(msg))
		}
		want := toCRLF(msg)
		if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
			want = append(want, "\r\n"...)
		}
		// DotReader turns CRLF into LF; compare in that form. It also
		// drops a CR before LF, so a bare CR at a line end is ambiguous:
		// check that the stream ends right.
		got, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(b.Bytes()))).DotReader())
		if err != nil {
			t.Fatalf("DotReader: %v (stream %q)", err, b.Bytes())
		}
		wantLF := bytes.ReplaceAll(want, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(got, wantLF) && !bytes.Equal(got, bytes.ReplaceAll(wantLF, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("round trip of %q = %q, want %q", msg, got, wantLF)
		}
		if !bytes.HasSuffix(b.Bytes(), []byte("\r\n.\r\n")) && b.String() != ".\r\n" {
			t.Fatalf("stream %q does not end in CRLF.CRLF", b.Bytes())
		}
	})
}

func toCRLF(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
