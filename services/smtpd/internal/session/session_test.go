package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
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

// TestAddressLiteral: the client's address in our Received field is an
// RFC 5321 address literal, tagged for IPv6.
func TestAddressLiteral(t *testing.T) {
	for client, want := range map[string]string{
		"192.0.2.7:40000":     "[192.0.2.7]",
		"[2001:db8::1]:40000": "[IPv6:2001:db8::1]",
		"[::1]:25":            "[IPv6:::1]",
		"[fe80::1%eth0]:25":   "[IPv6:fe80::1%eth0]",
		"192.0.2.7":           "[192.0.2.7]",
		"":                    "[unknown]",
	} {
		if got := string(appendAddressLiteral(nil, client)); got != want {
			t.Errorf("address literal of %q = %s, want %s", client, got, want)
		}
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
	if b.TryAcquire(30) || b.TryAcquire(101) {
		t.Fatal("TryAcquire took more than is free")
	}
	if !b.TryAcquire(20) {
		t.Fatal("TryAcquire refused free memory")
	}
	b.Release(100)
	if err := b.Acquire(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
}

// countingFinder is a fake dbd for the mailbox cache.
type countingFinder struct {
	calls  int
	exists bool
	fail   bool
}

func (f *countingFinder) Find(ctx context.Context, t model.Table, content []byte) (*wire.Row, error) {
	f.calls++
	switch {
	case f.fail:
		return nil, errors.New("dbd down")
	case !f.exists:
		return nil, client.ErrNotFound
	}
	return &wire.Row{State: model.State{Cols: map[string]uint64{model.ColPolicy: model.PolicyValue(time.Unix(1000, 0), model.PolicyAccept)}}}, nil
}

func TestMailboxCache(t *testing.T) {
	now := time.Unix(1000, 0)
	f := &countingFinder{exists: true}
	m := newMailboxes(f, 5*time.Second, 2, func() time.Time { return now }, 0)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		ok, policy, err := m.lookup(ctx, []byte("a@b"))
		if !ok || policy != model.PolicyAccept || err != nil {
			t.Fatalf("lookup: %v %v %v", ok, policy, err)
		}
	}
	if f.calls != 1 {
		t.Fatalf("%d dbd lookups for 3 within the TTL, want 1", f.calls)
	}
	f.exists = false
	now = now.Add(6 * time.Second) // expired: the removal is seen
	if ok, _, err := m.lookup(ctx, []byte("a@b")); ok || err != nil {
		t.Fatalf("after expiry: %v %v, want not found", ok, err)
	}
	f.exists = true
	now = now.Add(1100 * time.Millisecond) // "unknown" is kept for ttl/5 only
	if ok, _, err := m.lookup(ctx, []byte("a@b")); !ok || err != nil {
		t.Fatalf("a new mailbox not seen after ttl/5: %v %v", ok, err)
	}
	f.exists = false
	now = now.Add(6 * time.Second)
	m.lookup(ctx, []byte("a@b"))
	f.fail = true
	now = now.Add(6 * time.Second)
	if _, _, err := m.lookup(ctx, []byte("a@b")); err == nil {
		t.Fatal("a failed lookup was answered")
	}
	f.fail, f.exists = false, true
	if ok, _, err := m.lookup(ctx, []byte("a@b")); !ok || err != nil {
		t.Fatalf("a failure was remembered: %v %v", ok, err)
	}
	// Bounded: the map never grows past max.
	for _, a := range []string{"c", "d", "e", "f"} {
		m.lookup(ctx, []byte(a))
	}
	if len(m.known) > 2 {
		t.Fatalf("%d entries, max 2", len(m.known))
	}
}

func TestCheckAddress(t *testing.T) {
	bad := smtp.EnhancedCode{5, 1, 3}
	for _, tc := range []struct {
		addr string
		utf8 bool
		code int
	}{
		{"a@b.test", false, 0},
		{"", false, 0}, // the null sender
		{"jö@b.test", true, 0},
		{"jö@b.test", false, 553},
		{"j\xc3\x28@b.test", true, 501},
		{"j\xc3\x28@b.test", false, 553},
		{"a\rb@c.test", true, 501},
		{"a\x7f@c.test", false, 501},
		{"a\tb@c.test", false, 501},
		{strings.Repeat("l", 100) + "@" + strings.Repeat("d", 256), false, 0}, // long but clean
	} {
		err := checkAddress(tc.addr, tc.utf8, bad)
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("checkAddress(%q, %v) = %v, want nil", tc.addr, tc.utf8, err)
		case tc.code != 0 && (err == nil || err.Code != tc.code):
			t.Errorf("checkAddress(%q, %v) = %v, want %d", tc.addr, tc.utf8, err, tc.code)
		}
	}
}

// traceSafe is appendTraceSafe as a string.
func traceSafe(s string) string { return string(appendTraceSafe(nil, s)) }

// TestSenderLength: the longest sender MAIL takes makes a Return-Path line
// of exactly 998 octets (RFC 5322 §2.1.1); one octet more is refused with
// 501 5.1.7 and the session goes on.
func TestSenderLength(t *testing.T) {
	addr := func(n int) string { return strings.Repeat("l", n-len("@s.test")) + "@s.test" }
	if f := returnPathField(addr(maxSender)); len(f) != 998+len("\r\n") {
		t.Fatalf("Return-Path of the longest sender is %d octets with CRLF, want 1000", len(f))
	}
	c := dialFake(t, &fakeDB{}, metrics.New(prometheus.NewRegistry()), time.Now)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := c.Mail(addr(maxSender+1), nil); !errors.As(err, &se) || se.Code != 501 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 7}) {
		t.Fatalf("MAIL with a %d-octet sender: %v, want 501 5.1.7", maxSender+1, err)
	}
	if err := c.Mail(addr(maxSender), nil); err != nil {
		t.Fatalf("MAIL with a %d-octet sender: %v, want 250", maxSender, err)
	}
}
