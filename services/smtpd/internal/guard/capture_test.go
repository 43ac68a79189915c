package guard

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"testing"
	"time"
)

func TestCaptureRoundTrip(t *testing.T) {
	c := capture{max: 200}
	c.add(DirServer, 1500*time.Microsecond, []byte("220 mx.test ESMTP\r\n"))
	c.add(DirClient, 2*time.Millisecond, []byte("EHLO x\r\n"))
	c.add(DirTLS, 3*time.Millisecond, nil)
	c.add(DirClient, 4*time.Millisecond, bytes.Repeat([]byte("x"), 50)) // partly kept
	c.add(DirClient, 5*time.Millisecond, []byte("more"))                // merged into the elided count
	c.add(DirServer, 6*time.Millisecond, []byte("250 ok\r\n"))          // elided record
	want := []Record{
		{Dir: DirServer, At: time.Millisecond, Data: []byte("220 mx.test ESMTP\r\n")},
		{Dir: DirClient, At: 2 * time.Millisecond, Data: []byte("EHLO x\r\n")},
		{Dir: DirTLS, At: 3 * time.Millisecond},
		// Budget 200 - (32+19) - (32+8) - 32 - 32 leaves 45 of the 50
		// bytes; "more" then adds to the elided count.
		{Dir: DirClient, At: 4 * time.Millisecond, Data: bytes.Repeat([]byte("x"), 45), Elided: 5 + 4},
		{Dir: DirServer, At: 6 * time.Millisecond, Elided: 8},
	}
	got, err := ParseCapture(encodeCapture(c.recs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Dir != w.Dir || g.At != w.At || !bytes.Equal(g.Data, w.Data) || g.Elided != w.Elided {
			t.Errorf("record %d = {%c %v %q %d}, want {%c %v %q %d}", i, g.Dir, g.At, g.Data, g.Elided, w.Dir, w.At, w.Data, w.Elided)
		}
	}
}

func TestParseCaptureErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"no header", "C 0 0 0\n\n"},
		{"old version", "twinmx-capture/0\n"},
		{"bad dir", captureMagic + "X 0 0 0\n\n"},
		{"short data", captureMagic + "C 0 5 0\nabc\n"},
		{"no LF after data", captureMagic + "C 0 3 0\nabcd"},
		{"leading zero", captureMagic + "C 01 0 0\n\n"},
		{"negative", captureMagic + "C -1 0 0\n\n"},
		{"huge", captureMagic + "C 99999999999999999 0 0\n\n"},
		{"fields", captureMagic + "C 0 0\n\n"},
		{"unterminated", captureMagic + "C 0 0 0"},
	}
	for _, tt := range tests {
		if _, err := ParseCapture([]byte(tt.in)); !errors.Is(err, ErrBadCapture) {
			t.Errorf("%s: ParseCapture(%q) error = %v, want ErrBadCapture", tt.name, tt.in, err)
		}
	}
	if recs, err := ParseCapture([]byte(captureMagic)); err != nil || len(recs) != 0 {
		t.Errorf("empty capture: %v, %v", recs, err)
	}
}

// TestParseCaptureTimeOverflow: an AT beyond what a time.Duration holds
// in milliseconds (about 292 years) is refused. It was accepted and
// overflowed: the record's At came out negative or wrapped, and the
// capture re-encoded to other bytes (a replay then slept for a negative
// or bogus time).
func TestParseCaptureTimeOverflow(t *testing.T) {
	maxAt := int64(math.MaxInt64 / int64(time.Millisecond))
	for _, at := range []int64{maxAt + 1, 9300000000000, 1 << 53} {
		in := captureMagic + "C " + strconv.FormatInt(at, 10) + " 0 0\n\n"
		if recs, err := ParseCapture([]byte(in)); !errors.Is(err, ErrBadCapture) {
			t.Errorf("ParseCapture(%q) = %+v, %v; want ErrBadCapture", in, recs, err)
		}
	}
	in := captureMagic + "S " + strconv.FormatInt(maxAt, 10) + " 0 0\n\n"
	recs, err := ParseCapture([]byte(in))
	if err != nil || len(recs) != 1 || recs[0].At != time.Duration(maxAt)*time.Millisecond {
		t.Fatalf("ParseCapture(%q) = %+v, %v", in, recs, err)
	}
	if out := encodeCapture(recs); string(out) != in {
		t.Fatalf("re-encoded as %q", out)
	}
}

// FuzzParseCapture: the parser never panics, and what it accepts encodes
// back to the same bytes (the encoding is canonical).
func FuzzParseCapture(f *testing.F) {
	f.Add([]byte(captureMagic))
	f.Add([]byte(captureMagic + "S 0 4 0\n220 \nC 12 6 0\nEHLO x\nT 13 0 0\n\nC 14 0 99\n\n"))
	f.Add([]byte(captureMagic + "C 0 3 0\na\nb\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := ParseCapture(in)
		if err != nil {
			return
		}
		if out := encodeCapture(recs); !bytes.Equal(out, in) {
			t.Fatalf("ParseCapture(%q) re-encodes as %q", in, out)
		}
	})
}

// TestReplaceClient: replacing a client byte range by a mail reference
// keeps every other byte and the order of records, however the stream was
// cut into records and whatever was elided.
func TestReplaceClient(t *testing.T) {
	stream := []byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	from := int64(bytes.Index(stream, []byte("Subject")))
	to := int64(bytes.Index(stream, []byte("QUIT")))
	for seed := int64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		c := &capture{max: 1 << 20}
		if seed%3 == 0 {
			c.max = 40 + rng.Intn(60) // some bytes get elided
		}
		var want []byte // the client stream as the records should tell it
		for pos := 0; pos < len(stream); {
			n := 1 + rng.Intn(20)
			n = min(n, len(stream)-pos)
			c.add(DirClient, 0, stream[pos:pos+n])
			if rng.Intn(2) == 0 {
				c.add(DirServer, 0, []byte("250 ok\r\n"))
			}
			pos += n
		}
		c.replaceClient(from, to, []byte("REF"))
		var got []byte
		var total int64
		mails := 0
		for _, r := range c.recs {
			switch r.Dir {
			case DirClient:
				got = append(got, r.Data...)
				got = append(got, bytes.Repeat([]byte{'#'}, int(r.Elided))...)
				total += int64(len(r.Data)) + r.Elided
			case DirMail:
				mails++
				got = append(got, "<REF>"...)
			}
		}
		// Kept bytes are exact; elided ones show as '#'.
		want = append(want, stream[:from]...)
		want = append(want, "<REF>"...)
		want = append(want, stream[to:]...)
		if mails != 1 || total != int64(len(stream))-(to-from) || len(got) != len(want) {
			t.Fatalf("seed %d: %d mail records, %d client bytes; got %q want %q", seed, mails, total, got, want)
		}
		for i := range got {
			if got[i] != '#' && got[i] != want[i] {
				t.Fatalf("seed %d: got %q want %q", seed, got, want)
			}
		}
		if _, err := ParseCapture(encodeCapture(c.recs)); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestCaptureArenaBounded: a connection that sends mail after mail keeps
// its capture's arena within a small multiple of the budget, although
// each mail's DATA bytes are copied in before they are replaced by a
// reference, and bytes pipelined behind each DATA (in the same chunk)
// keep the arena's tail in use. Every transcript byte is still exact.
func TestCaptureArenaBounded(t *testing.T) {
	c := &capture{max: 64 << 10} // the 300 mails' commands fit, nothing is elided
	defer c.release()
	data := bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB
	var want []byte
	for i := range 300 {
		cmd := []byte(fmt.Sprintf("MAIL FROM:<a%d@b>\r\n", i))
		c.add(DirClient, 0, cmd)
		c.add(DirServer, 0, []byte("354 go ahead\r\n"))
		from := c.client
		c.add(DirClient, 0, data[:4000])
		c.add(DirClient, 0, append(bytes.Clone(data[4000:]), "RSET\r\n"...))
		c.replaceClient(from, from+int64(len(data)), []byte("mail=K"))
		if len(c.buf) > 4*c.max {
			t.Fatalf("mail %d: arena holds %d bytes, budget %d", i, len(c.buf), c.max)
		}
		want = append(want, cmd...)
		want = append(want, "<mail=K>RSET\r\n"...)
	}
	recs, err := ParseCapture(encodeCapture(c.recs))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, r := range recs {
		switch r.Dir {
		case DirClient:
			got = append(got, r.Data...)
		case DirMail:
			got = append(got, "<"+string(r.Data)+">"...)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("transcript differs:\n got %.200q\nwant %.200q", got, want)
	}
}

// TestCaptureRelease: a released capture's memory serves the next one
// without changing what was taken from the first, and records nothing
// more.
func TestCaptureRelease(t *testing.T) {
	a := &capture{max: 1 << 20}
	a.add(DirClient, 0, []byte("EHLO a\r\n"))
	a.add(DirServer, 0, []byte("250 a\r\n"))
	enc := encodeCapture(a.recs)
	keep := bytes.Clone(enc)
	a.release()
	a.add(DirClient, 0, []byte("late"))
	if len(a.recs) != 0 {
		t.Fatalf("released capture recorded %d records", len(a.recs))
	}
	for range 10 {
		b := &capture{max: 1 << 20}
		b.add(DirClient, 0, bytes.Repeat([]byte("x"), 1000))
		b.release()
	}
	if !bytes.Equal(enc, keep) {
		t.Fatalf("taken capture changed after release: %q", enc)
	}
}
