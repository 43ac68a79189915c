package proctest

import "testing"

func TestWireForm(t *testing.T) {
	got := string(WireForm([]byte("From a@b Thu Aug 22 12:36:23 2002\nSubject: x\r\n\nbody\rx\n")))
	if want := "Subject: x\r\n\r\nbody\rx\r\n"; got != want {
		t.Fatalf("WireForm = %q, want %q", got, want)
	}
	if got := string(ToCRLF([]byte("\n"))); got != "\r\n" {
		t.Fatalf("ToCRLF(LF) = %q", got)
	}
}
