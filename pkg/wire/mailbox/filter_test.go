package mailbox

import "testing"

func TestDropFields(t *testing.T) {
	raw := "From: a@b\r\nX-Bad: 1\r\n\tmore\r\nSubject: hi\r\nx-bad : 2\r\n\r\nX-Bad: in the body\r\n"
	want := "From: a@b\r\nSubject: hi\r\n\r\nX-Bad: in the body\r\n"
	if got := string(DropFields([]byte(raw), []string{"x-bad"})); got != want {
		t.Fatalf("DropFields = %q, want %q", got, want)
	}
	if got := string(DropFields([]byte(raw), []string{"x-other"})); got != raw {
		t.Fatalf("DropFields without a match changed the mail: %q", got)
	}
	if got := string(DropFields([]byte("X-Bad: only"), []string{"x-bad"})); got != "" {
		t.Fatalf("DropFields of a header-only mail = %q", got)
	}
}

func FuzzDropFields(f *testing.F) {
	f.Add([]byte("A: 1\nB: 2\n\tx\n\nbody"), "b")
	f.Add([]byte("\n\n"), "a")
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		out := DropFields(raw, []string{name})
		if len(out) > len(raw) {
			t.Fatalf("DropFields grew the mail from %d to %d bytes", len(raw), len(out))
		}
	})
}
