package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func readAllMbox(t testing.TB, in []byte, q mboxQuoting, maxSize int) []mboxMessage {
	t.Helper()
	r := newMboxReader(bytes.NewReader(in), q, maxSize)
	var out []mboxMessage
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, m)
		if len(out) > len(in)+1 {
			t.Fatalf("more messages than input bytes: the reader does not advance")
		}
	}
}

func TestMboxReader(t *testing.T) {
	date := time.Date(2002, 8, 22, 12, 36, 23, 0, time.UTC)
	type want struct {
		raw string
		err string // substring of Err; "" = no error
	}
	tests := []struct {
		name string
		in   string
		q    mboxQuoting
		want []want
	}{
		{"empty file", "", mboxrd, nil},
		{"one", "From a@b Thu Aug 22 12:36:23 2002\nSubject: x\n\nbody\n\n", mboxrd, []want{{raw: "Subject: x\n\nbody\n"}}},
		{"two, no final blank line", "From a@b Thu Aug 22 12:36:23 2002\nA: 1\n\nx\n\nFrom b Thu Aug 22 12:36:23 2002\nB: 2\n\ny\n", mboxrd,
			[]want{{raw: "A: 1\n\nx\n"}, {raw: "B: 2\n\ny"}}},
		{"mboxrd unquoting", "From a Thu Aug 22 12:36:23 2002\nA: 1\n\n>From x\n>>From y\n>Fromage\n From z\n\n", mboxrd,
			[]want{{raw: "A: 1\n\nFrom x\n>From y\n>Fromage\n From z\n"}}},
		{"mboxo unquoting", "From a Thu Aug 22 12:36:23 2002\nA: 1\n\n>From x\n>>From y\n\n", mboxo,
			[]want{{raw: "A: 1\n\nFrom x\n>>From y\n"}}},
		{"crlf mbox", "From a Thu Aug 22 12:36:23 2002\r\nA: 1\r\n\r\nx\r\n\r\n", mboxrd, []want{{raw: "A: 1\r\n\r\nx\r\n"}}},
		{"text before the first separator", "Subject: no\n\nx\nFrom a Thu Aug 22 12:36:23 2002\nA: 1\n\n", mboxrd,
			[]want{{err: "before the first"}, {raw: "A: 1\n"}}},
		{"blank lines before the first separator", "\n\nFrom a Thu Aug 22 12:36:23 2002\nA: 1\n\n", mboxrd, []want{{raw: "A: 1\n"}}},
		{"empty message", "From a Thu Aug 22 12:36:23 2002\n\nFrom b Thu Aug 22 12:36:23 2002\nA: 1\n", mboxrd,
			[]want{{err: "empty"}, {raw: "A: 1"}}},
		{"separator at the very end", "From a Thu Aug 22 12:36:23 2002\nA: 1\n\nFrom b", mboxrd, []want{{raw: "A: 1\n"}, {err: "empty"}}},
		{"no header field", "From a Thu Aug 22 12:36:23 2002\n\x00\x01binary\n\n", mboxrd, []want{{err: "header field"}}},
		{"too large, then fine", "From a Thu Aug 22 12:36:23 2002\nA: " + strings.Repeat("x", 100) + "\n\nFrom b Thu Aug 22 12:36:23 2002\nB: 1\n\n", mboxrd,
			[]want{{err: "too large"}, {raw: "B: 1\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAllMbox(t, []byte(tt.in), tt.q, 64)
			if len(got) != len(tt.want) {
				t.Fatalf("read %q: %d messages %+v, want %d", tt.in, len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if w.err != "" {
					if g.Err == nil || !strings.Contains(g.Err.Error(), w.err) {
						t.Fatalf("message %d: Err %v, want %q", i, g.Err, w.err)
					}
					continue
				}
				if g.Err != nil || string(g.Raw) != w.raw {
					t.Fatalf("message %d = %q, %v; want %q", i, g.Raw, g.Err, w.raw)
				}
			}
			if len(got) > 0 && got[len(got)-1].Err == nil && got[len(got)-1].Date != date && tt.name != "crlf mbox" {
				t.Fatalf("date %v, want %v", got[len(got)-1].Date, date)
			}
		})
	}
}

func TestMboxSeparatorLine(t *testing.T) {
	got := readAllMbox(t, []byte("From jm@example.org  Thu Aug  2 02:36:23 2002\nA: 1\n"), mboxrd, 1<<20)
	if len(got) != 1 || got[0].Sender != "jm@example.org" || !got[0].Date.Equal(time.Date(2002, 8, 2, 2, 36, 23, 0, time.UTC)) || got[0].Line != 1 {
		t.Fatalf("separator parsed as %+v", got)
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeMbox(w, "", time.Date(2002, 8, 2, 2, 36, 23, 0, time.UTC), []byte("A: 1\n"))
	writeMbox(w, "a b", time.Time{}, []byte("From me\n>From you"))
	w.Flush()
	want := "From MAILER-DAEMON Fri Aug  2 02:36:23 2002\nA: 1\n\n" +
		"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n>From me\n>>From you\n"
	if b.String() != want {
		t.Fatalf("writeMbox wrote %q, want %q", b.String(), want)
	}
}

// FuzzMbox checks the reader on any input (no panic, every message either
// imported or refused with a reason, with either quoting) and that writing the messages it
// accepts and reading them back gives the same bytes; the input as one
// mail must survive a write and a read as well.
func FuzzMbox(f *testing.F) {
	f.Add([]byte("From a@b Thu Aug 22 12:36:23 2002\nSubject: x\n\n>From y\nbody\n\nFrom b\nA: 1\r\n\r\nx"))
	f.Add([]byte("A: 1\n\nFrom x\n>>From y\n\r\n"))
	f.Add([]byte("From \r\nB:\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 1 << 16
		var ok [][]byte
		for _, m := range readAllMbox(t, in, mboxrd, max) {
			if (m.Err == nil) == (m.Raw == nil) {
				t.Fatalf("message at line %d: Raw %q with Err %v", m.Line, m.Raw, m.Err)
			}
			if m.Err == nil {
				ok = append(ok, m.Raw)
			}
		}
		// mboxo reads any input too, each message imported or refused.
		for _, m := range readAllMbox(t, in, mboxo, max) {
			if (m.Err == nil) == (m.Raw == nil) {
				t.Fatalf("mboxo: message at line %d: Raw %q with Err %v", m.Line, m.Raw, m.Err)
			}
		}
		if checkMail(in) == nil && len(in) <= max {
			ok = append(ok, in)
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		for _, raw := range ok {
			writeMbox(w, "s", time.Unix(1e9, 0), raw)
		}
		w.Flush()
		back := readAllMbox(t, b.Bytes(), mboxrd, max)
		if len(back) != len(ok) {
			t.Fatalf("wrote %d mails, read %d back from %q", len(ok), len(back), b.Bytes())
		}
		for i := range ok {
			if back[i].Err != nil || !bytes.Equal(back[i].Raw, ok[i]) {
				t.Fatalf("mail %d: wrote %q, read %q (%v)", i, ok[i], back[i].Raw, back[i].Err)
			}
			if !back[i].Date.Equal(time.Unix(1e9, 0)) || back[i].Sender != "s" {
				t.Fatalf("mail %d: separator read back as %q %v", i, back[i].Sender, back[i].Date)
			}
		}
	})
}

// TestMboxLongQuoteRun: a line of more '>' than the reader's buffer holds
// (64 KiB) before "From " is quoted by the writer like any other, so the
// reader must see where the run ends to unquote it; it used to decide on
// the run's first 64 KiB (no "From " there) and kept the quoting '>'.
func TestMboxLongQuoteRun(t *testing.T) {
	long := strings.Repeat(">", 70000)
	mails := []string{
		"A: 1\n\n" + long + "From x\n" + long + "\n" + long + "From y",
		"B: 2\n\n>From z\n",
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, m := range mails {
		writeMbox(w, "s", time.Unix(1e9, 0), []byte(m))
	}
	w.Flush()
	got := readAllMbox(t, b.Bytes(), mboxrd, 1<<20)
	if len(got) != len(mails) {
		t.Fatalf("read %d messages, want %d", len(got), len(mails))
	}
	for i, m := range mails {
		if got[i].Err != nil || string(got[i].Raw) != m {
			t.Errorf("mail %d: read back %d bytes (%v), want the %d written", i, len(got[i].Raw), got[i].Err, len(m))
		}
	}
	// Line numbers count the quoted lines once each.
	if got[1].Line != 7 {
		t.Errorf("second separator at line %d, want 7", got[1].Line)
	}
	// mboxo: only a single '>' is quoting; the long run stays.
	got = readAllMbox(t, []byte("From a\nA: 1\n\n"+long+"From x\n>From y\n"), mboxo, 1<<20)
	if want := "A: 1\n\n" + long + "From x\nFrom y"; len(got) != 1 || string(got[0].Raw) != want {
		t.Errorf("mboxo: read %d messages, want 1 of %d bytes", len(got), len(want))
	}
	// The run counts towards the size bound.
	got = readAllMbox(t, []byte("From a\nA: 1\n\n"+long+"\n\nFrom b\nB: 1\n"), mboxrd, 1000)
	if len(got) != 2 || !errors.Is(got[0].Err, errMboxTooLarge) || string(got[1].Raw) != "B: 1" {
		t.Errorf("over the size bound: read %+v", got)
	}
}

// TestMboxSizeBoundExact: a mail of exactly the size bound is imported from
// an mbox as it is from a Maildir; the line end the writer puts after each
// mail (and a CRLF one after a CRLF separator) is not the mail's and must
// not count. It did, so a mail exported to an mbox could not be imported
// back with --max-size its own size.
func TestMboxSizeBoundExact(t *testing.T) {
	for _, mail := range []string{"A: 1\n\nbody\n", "A: 1\r\n\r\nbody\r\n", "A: 1\n\nno line end"} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeMbox(w, "s", time.Unix(1e9, 0), []byte(mail))
		writeMbox(w, "s", time.Unix(1e9, 0), []byte(mail))
		w.Flush()
		got := readAllMbox(t, b.Bytes(), mboxrd, len(mail))
		if len(got) != 2 || got[0].Err != nil || got[1].Err != nil || string(got[0].Raw) != mail || string(got[1].Raw) != mail {
			t.Errorf("mail of %d bytes, bound %d: read %+v", len(mail), len(mail), got)
		}
		// One byte over is still too large, in the middle and at the end.
		got = readAllMbox(t, b.Bytes(), mboxrd, len(mail)-1)
		if len(got) != 2 || !errors.Is(got[0].Err, errMboxTooLarge) || !errors.Is(got[1].Err, errMboxTooLarge) {
			t.Errorf("mail of %d bytes, bound %d: read %+v", len(mail), len(mail)-1, got)
		}
	}
	// A CRLF mbox (written on Windows): the CRLF after each mail is not
	// the mail's either.
	in := "From s Sun Sep  9 01:46:40 2001\r\nA: 1\r\n\r\nx\r\n\r\nFrom s Sun Sep  9 01:46:40 2001\r\nA: 1\r\n\r\nx\r\n"
	got := readAllMbox(t, []byte(in), mboxrd, len("A: 1\r\n\r\nx\r\n"))
	if len(got) != 2 || got[0].Err != nil || got[1].Err != nil {
		t.Errorf("CRLF mbox at the bound: read %+v", got)
	}
}
