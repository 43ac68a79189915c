package relay

import (
	"bytes"
	"testing"
)

func TestCanonicalLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\nb"},
		{"a\r\r\r\nb", "a\r\nb"},
		{"a\r\rb", "a\r\n\r\nb"},
		{"x\r.\r\ny", "x\r\n.\r\ny"},
		{"x\n.\r\ny", "x\r\n.\r\ny"},
		{"x\r\n.\ry", "x\r\n.\r\ny"},
		{"\r", "\r\n"},
		{"\n", "\r\n"},
		{"\n\r", "\r\n\r\n"},
		{"a\x00b\r\n", "a\x00b\r\n"},
	} {
		if got := canonicalLines([]byte(tc.in)); string(got) != tc.want {
			t.Errorf("canonicalLines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalLinesNoCopy(t *testing.T) {
	raw := []byte("Subject: x\r\n\r\nbody\r\n")
	if got := canonicalLines(raw); &got[0] != &raw[0] {
		t.Error("a mail that is already canonical was copied")
	}
}

// FuzzCanonicalLines checks the invariants: no bare CR or LF comes out,
// the bytes other than CR and LF come out unchanged and in order, and a
// canonical input is returned as it is.
func FuzzCanonicalLines(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "a\rb", "a\nb", "\r.\r\n", "\n.\n", "a\r\r\n", "\r\r\r", "\r\n\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := canonicalLines(in)
		if hasBareLineEnd(out) {
			t.Fatalf("%q -> %q has a bare CR or LF", in, out)
		}
		strip := func(b []byte) []byte {
			var s []byte
			for _, c := range b {
				if c != '\r' && c != '\n' {
					s = append(s, c)
				}
			}
			return s
		}
		if !bytes.Equal(strip(in), strip(out)) {
			t.Fatalf("%q -> %q changed bytes other than line ends", in, out)
		}
		if !hasBareLineEnd(in) && !bytes.Equal(in, out) {
			t.Fatalf("canonical %q changed to %q", in, out)
		}
		if bytes.Count(out, []byte("\r\n")) < bytes.Count(in, []byte("\n")) {
			t.Fatalf("%q -> %q lost line ends", in, out)
		}
	})
}
