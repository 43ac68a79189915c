package model

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestKeyKnownAnswer pins the key scheme: a changed key would orphan every
// stored row. The value was computed independently with
//
//	printf 'twinmx/row/v1/mailbox\0Jo@example.com' | sha256sum
func TestKeyKnownAnswer(t *testing.T) {
	const want = "3f16ab57b7726bdd6ccb9b04f8476713f1f1627c64087a54a36692a050daa303"
	if got := KeyOf(Mailbox, []byte("Jo@example.com")).String(); got != want {
		t.Errorf("KeyOf(mailbox, Jo@example.com) = %s, want %s", got, want)
	}
	h := NewKeyHash(Mailbox)
	h.Write([]byte("Jo@"))
	h.Write([]byte("example.com"))
	if got := KeyFromHash(h).String(); got != want {
		t.Errorf("streamed key = %s, want %s", got, want)
	}
	if KeyOf(Text, []byte("Jo@example.com")) == KeyOf(Mailbox, []byte("Jo@example.com")) {
		t.Error("equal content in two tables has equal keys")
	}
}

func TestParseKey(t *testing.T) {
	k := KeyOf(Body, []byte("x"))
	if got, err := ParseKey(k.String()); err != nil || got != k {
		t.Errorf("ParseKey(%s) = %v, %v", k, got, err)
	}
	for _, s := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 65)} {
		if _, err := ParseKey(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) error = %v, want ErrBadKey", s, err)
		}
	}
	if !(Key{}).IsZero() || k.IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestTables(t *testing.T) {
	ts := Tables()
	if len(ts) != 13 {
		t.Fatalf("Tables() has %d tables, want 13", len(ts))
	}
	for _, tb := range ts {
		got, err := ParseTable(tb.String())
		if err != nil || got != tb {
			t.Errorf("ParseTable(%q) = %v, %v", tb.String(), got, err)
		}
		if err := CheckTable(tb); err != nil {
			t.Errorf("CheckTable(%v) = %v", tb, err)
		}
	}
	for _, tb := range []Table{0, Config + 1, 255} {
		if tb.Valid() || !errors.Is(CheckTable(tb), ErrUnknownTable) {
			t.Errorf("table %d accepted", uint8(tb))
		}
	}
	if _, err := ParseTable("Body"); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("ParseTable(Body) error = %v, want ErrUnknownTable", err)
	}
}

func BenchmarkKeyOf(b *testing.B) {
	for _, size := range []int{64, 300, 1024} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			content := []byte(strings.Repeat("x", size))
			b.SetBytes(int64(len(content)))
			b.ReportAllocs()
			for b.Loop() {
				KeyOf(Receive, content)
			}
		})
	}
}

// TestKeyOfSizes: KeyOf gives the key of the streaming hash for every
// size around the stack buffer's limit, in every table.
func TestKeyOfSizes(t *testing.T) {
	content := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 30))
	for _, tb := range Tables() {
		for n := 0; n <= len(content); n++ {
			h := NewKeyHash(tb)
			h.Write(content[:n])
			if got, want := KeyOf(tb, content[:n]), KeyFromHash(h); got != want {
				t.Fatalf("KeyOf(%s, %d bytes) = %s, want %s", tb, n, got, want)
			}
		}
	}
}
