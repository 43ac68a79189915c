package session

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
)

func TestUnsafeBytes(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"a\r\nb\r\n":         "",
		"a\nb":               guard.ViolationBareLF,
		"a\r\r\n":            "",
		"a\r":                "",
		"a\rb.c\r\n":         "",
		"\n":                 guard.ViolationBareLF,
		"a\x00\r\n":          guard.ViolationNUL,
		"line\r\n.\r\nx\r\n": "",
		"a\r.\r\n":           guard.ViolationDotCR,
		"a\r.\nb":            guard.ViolationDotCR,
		"a\r\n.\rb\r\n":      guard.ViolationDotCR,
		".\rb\r\n":           guard.ViolationDotCR,
		"a\r..\r\n":          "",
	} {
		if got := unsafeBytes([]byte(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestTraceSafe(t *testing.T) {
	got := traceSafe("evil\r\n(x); <y>\\ \x7fé")
	if strings.ContainsAny(got, "\r\n(); <>\\\x7f") || len(got) != len("evil\r\n(x); <y>\\ \x7fé") {
		t.Fatalf("%q", got)
	}
	if traceSafe("") != "unknown" || len(traceSafe(strings.Repeat("a", 1000))) != 255 {
		t.Fatal("empty or long name")
	}
	// A trace field with a hostile HELO is still one Received field.
	field := "Received: from " + traceSafe("a\r\nX-Injected: 1") + " ([1.2.3.4])\r\n\tby mx;\r\n\tdate\r\n"
	if _, err := model.Split([]byte("S: x\r\n\r\n")).WithTrace([]byte(field)); err != nil {
		t.Fatal(err)
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 101); err == nil {
		t.Fatal("acquired more than the budget")
	}
	if err := b.Acquire(ctx, 80); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx, 30); err == nil {
		t.Fatal("acquired past the budget")
	}
	b.Release(80)
	if err := b.Acquire(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
}
