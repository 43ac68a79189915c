package replay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
)

func TestFinalCodes(t *testing.T) {
	got := finalCodes([]byte("220 hi\r\n250-a\r\n250-b\r\n250 c\r\n354\r\n451 4.7.1 x\r\n550 partial"))
	want := []int{220, 250, 354, 451}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

// TestPlayAgainstScriptedServer plays a recording against a server that
// answers differently at one point: the difference is reported.
func TestPlayAgainstScriptedServer(t *testing.T) {
	recs := []guard.Record{
		{Dir: guard.DirServer, Data: []byte("220 mx ESMTP\r\n")},
		{Dir: guard.DirClient, Data: []byte("EHLO c\r\n")},
		{Dir: guard.DirServer, Data: []byte("250-mx\r\n250 SIZE\r\n")},
		{Dir: guard.DirClient, Data: []byte("QUIT\r\n")},
		{Dir: guard.DirServer, Data: []byte("221 bye\r\n")},
	}
	for _, tc := range []struct {
		ehlo  string
		match bool
	}{{"250-x\r\n250 y\r\n", true}, {"502 no\r\n", false}} {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			buf := make([]byte, 100)
			b.Write([]byte("220 other\r\n"))
			b.Read(buf)
			b.Write([]byte(tc.ehlo))
			b.Read(buf)
			b.Write([]byte("221 bye\r\n"))
		}()
		res, err := Play(context.Background(), a, recs, Options{Wait: 2 * time.Second})
		a.Close()
		if err != nil || res.Match() != tc.match {
			t.Errorf("ehlo reply %q: %+v %v, want match=%v", tc.ehlo, res, err, tc.match)
		}
	}
}

func TestStuff(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "\r\n.\r\n",
		"a\r\n":                 "a\r\n.\r\n",
		".\r\n..x\r\nb\r.c\r\n": "..\r\n...x\r\nb\r.c\r\n.\r\n",
		"no end":                "no end\r\n.\r\n",
	} {
		if got := string(Stuff([]byte(in))); got != want {
			t.Errorf("Stuff(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDataRef(t *testing.T) {
	m, r := model.KeyOf(model.Mail, []byte("m")), model.KeyOf(model.Received, []byte("r"))
	gm, gr, err := ParseDataRef([]byte(DataRef(m, r)))
	if err != nil || gm != m || gr != r {
		t.Fatalf("round trip: %v %v %v", gm, gr, err)
	}
	for _, bad := range []string{"", "mail=x received=y", "received=" + r.String() + " mail=" + m.String()} {
		if _, _, err := ParseDataRef([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte(MetaLine("s1", "127.0.0.1:1", time.Unix(0, 0)) + "twinmx-capture/1\nC 0 6 0\nQUIT\r\n\n"))
	f.Add([]byte("twinmx-capture/1\n"))
	f.Add([]byte("twinmx-session x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		meta, recs, err := Split(b)
		if err != nil {
			return
		}
		if bytes.Contains([]byte(meta), []byte("\n")) {
			t.Fatalf("meta %q holds a line end", meta)
		}
		_ = finalCodes(b)
		_ = recs
	})
}

// TestReplyCodes: a reply code is three digits, the first 1 to 5 (RFC
// 5321 §4.2). Lines that strconv.Atoi read as codes ("-50", "+25") were
// taken for replies, by the recording's side and the live side alike.
func TestReplyCodes(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{name: "final", in: "250 ok\r\n", want: 250},
		{name: "bare code", in: "354\r\n", want: 354},
		{name: "multi-line", in: "250-a\r\n250-b\r\n221 c\r\n", want: 221},
		{name: "minus sign", in: "-50 x\r\n", wantErr: true},
		{name: "plus sign", in: "+25 x\r\n", wantErr: true},
		{name: "space inside", in: " 25 x\r\n", wantErr: true},
		{name: "first digit 6", in: "650 x\r\n", wantErr: true},
		{name: "short", in: "25\r\n", wantErr: true},
		{name: "no line end", in: "250 ok", wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
			if (err != nil) != c.wantErr || (!c.wantErr && got != c.want) {
				t.Errorf("readReply(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.wantErr)
			}
			codes := finalCodes([]byte(c.in))
			if c.wantErr && len(codes) != 0 || !c.wantErr && (len(codes) != 1 || codes[0] != c.want) {
				t.Errorf("finalCodes(%q) = %v, want [%d] (none if malformed)", c.in, codes, c.want)
			}
		})
	}
}

// TestPlayCancelled: a target that takes a connection and never answers
// holds a replay for the whole --wait (30 s a reply by default); a
// cancelled context (the operator gave up) ends it at once.
func TestPlayCancelled(t *testing.T) {
	recs := []guard.Record{
		{Dir: guard.DirServer, Data: []byte("220 mx\r\n")},
		{Dir: guard.DirClient, Data: []byte("QUIT\r\n")},
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// A write on a pipe returns once it has been read: Play is then
		// inside the greeting's read, past every check of ctx, waiting
		// for the rest of the line. Send no more, and give up.
		b.Write([]byte("2"))
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Play(ctx, a, recs, Options{Wait: time.Hour})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Play = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a failure bound, not a timing
		t.Fatal("Play still blocked on a silent target after its context was cancelled")
	}
}

// FuzzReadReply: any server bytes give a code from 100 to 599 or an
// error, never a panic, and finalCodes agrees on well-formed replies.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "354\r\n", "-50 x\r\n", "+25\r\n", "2\r\n", "250-", "220 mx ESMTP\n", "999 x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, first, err := readReply(bufio.NewReaderSize(bytes.NewReader(b), 64))
		if err == nil && (code < 100 || code > 599 || !bytes.HasPrefix(b, first)) {
			t.Fatalf("readReply(%q) = %d, first line %q", b, code, first)
		}
		if h := greetingHost(b); strings.ContainsAny(h, " \t\r\n") {
			t.Fatalf("greetingHost(%q) = %q", b, h)
		}
		for _, c := range finalCodes(b) {
			if c < 100 || c > 599 {
				t.Fatalf("finalCodes(%q) holds %d", b, c)
			}
		}
	})
}

// FuzzParseDataRef: a capture's M record is read from a file or a row
// anyone with an admin key may have written; parsing never panics and
// what parses prints back the same.
func FuzzParseDataRef(f *testing.F) {
	m, r := model.KeyOf(model.Mail, []byte("m")), model.KeyOf(model.Received, []byte("r"))
	for _, s := range []string{DataRef(m, r), "", "mail= received=", "mail=x received=y", " mail=" + m.String() + "\treceived=" + r.String() + "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mk, rk, err := ParseDataRef(b)
		if err != nil {
			return
		}
		if again, _, err := ParseDataRef([]byte(DataRef(mk, rk))); err != nil || again != mk {
			t.Fatalf("ParseDataRef(%q) = %v %v, which does not print back: %v", b, mk, rk, err)
		}
	})
}

// TestPlayRefusesRecordedServer: a target that greets with the recorded
// server's name is most likely the MX the session was recorded at, where
// a replay is real mail; Play stops after the greeting unless told
// otherwise. A multi-line greeting counts by its first line.
func TestPlayRefusesRecordedServer(t *testing.T) {
	recs := []guard.Record{
		{Dir: guard.DirServer, Data: []byte("220-MX.example.org ESMTP twinmx\r\n220 hello\r\n")},
		{Dir: guard.DirClient, Data: []byte("QUIT\r\n")},
		{Dir: guard.DirServer, Data: []byte("221 bye\r\n")},
	}
	for _, tc := range []struct {
		greeting string
		allow    bool
		refused  bool
	}{
		{"220 mx.example.org ESMTP\r\n", false, true},
		{"220 mx.example.org ESMTP\r\n", true, false},
		{"220 test-mx.example.org ESMTP\r\n", false, false},
	} {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			b.Write([]byte(tc.greeting))
			buf := make([]byte, 100)
			if n, _ := b.Read(buf); n > 0 {
				b.Write([]byte("221 bye\r\n"))
			}
		}()
		res, err := Play(context.Background(), a, recs, Options{Wait: 2 * time.Second, RecordedServer: tc.allow})
		a.Close()
		if got := errors.Is(err, ErrRecordedServer); got != tc.refused {
			t.Errorf("greeting %q, allowed %v: %v, refused %v, want %v", tc.greeting, tc.allow, err, got, tc.refused)
		}
		if !tc.refused && (err != nil || !res.Match()) {
			t.Errorf("greeting %q, allowed %v: %+v %v, want a match", tc.greeting, tc.allow, res, err)
		}
	}
}
