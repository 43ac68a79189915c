package model

import (
	"testing"
	"time"
)

func TestAccountRows(t *testing.T) {
	if err := CheckLogin("Alice.B+x@example.org"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a b", "a\"b", "a\\b", "é", string(make([]byte, MaxLoginLen+1))} {
		if CheckLogin(bad) == nil {
			t.Errorf("CheckLogin(%q) accepted", bad)
		}
	}
	if string(AccountContent("Alice")) != string(AccountContent("alice")) {
		t.Fatal("logins differing in case name different accounts")
	}
	if l, err := ParseAccountContent(AccountContent("Alice")); err != nil || l != "alice" {
		t.Fatalf("ParseAccountContent = %q, %v", l, err)
	}
	if _, err := ParseAccountContent([]byte("twinmx-account/1\na b")); err == nil {
		t.Fatal("bad login parsed")
	}
	l, h, err := ParsePasswordContent(PasswordContent("Bob", "$argon2id$x"))
	if err != nil || l != "bob" || h != "$argon2id$x" {
		t.Fatalf("ParsePasswordContent = %q, %q, %v", l, h, err)
	}
	for _, bad := range []string{"", "twinmx-password/1\nbob", "twinmx-password/1\nbob\n", "x\nbob\nh"} {
		if _, _, err := ParsePasswordContent([]byte(bad)); err == nil {
			t.Errorf("ParsePasswordContent(%q) accepted", bad)
		}
	}
}

// TestAccountColumnsMerge: the newest password wins and a mailbox removed
// later stays removed, whatever order two sites' states merge in.
func TestAccountColumnsMerge(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	p1, p2 := KeyOf(Text, []byte("p1")), KeyOf(Text, []byte("p2"))
	m1, m2 := KeyOf(Mailbox, []byte("m1")), KeyOf(Mailbox, []byte("m2"))
	var a, b State
	a.Set(PasswordColumn(p1), uint64(t0.UnixMilli()))
	a.Set(MailboxColumn(m1), MemberValue(t0, true))
	a.Set(MailboxColumn(m2), MemberValue(t0, true))
	b = a.Clone()
	b.Set(PasswordColumn(p2), uint64(t0.Add(time.Second).UnixMilli()))
	b.Set(MailboxColumn(m2), MemberValue(t0.Add(time.Second), false))
	for _, st := range []State{Merge(a, b), Merge(b, a)} {
		if k, ok := CurrentPassword(st); !ok || k != p2 {
			t.Fatalf("CurrentPassword = %s, %v; want the newer one", k, ok)
		}
		if got := AccountMailboxes(st); len(got) != 1 || got[0] != m1 {
			t.Fatalf("AccountMailboxes = %v, want only m1", got)
		}
	}
	if _, ok := CurrentPassword(State{}); ok {
		t.Fatal("empty account has a password")
	}
	if len(PasswordColumn(p1)) > 64 || len(MailboxColumn(m1)) > 64 {
		t.Fatal("link column names exceed 64 bytes")
	}
	if !IsMember(MemberValue(t0, true)) || IsMember(MemberValue(t0, false)) || MemberValue(t0, true) <= MemberValue(t0, false) {
		t.Fatal("MemberValue order")
	}
}

func TestHeaderFilters(t *testing.T) {
	col, err := HeaderFilterColumn("X-Mailer-Junk")
	if err != nil || col != "drop.x-mailer-junk" {
		t.Fatalf("HeaderFilterColumn = %q, %v", col, err)
	}
	for _, bad := range []string{"", "a:b", "a.b", "a b", "ä"} {
		if _, err := HeaderFilterColumn(bad); err == nil {
			t.Errorf("HeaderFilterColumn(%q) accepted", bad)
		}
	}
	var st State
	t0 := time.UnixMilli(1_800_000_000_000)
	st.Set(col, MemberValue(t0, true))
	c2, _ := HeaderFilterColumn("x-gone")
	st.Set(c2, MemberValue(t0, false))
	if got := HeaderFilters(st); len(got) != 1 || got[0] != "x-mailer-junk" {
		t.Fatalf("HeaderFilters = %v", got)
	}
}

// TestParseAccountContentCanonical: AccountContent and PasswordContent
// write the login lower-cased, so content holding an upper-case or no login
// was written by nobody. ParseAccountContent took "twinmx-account/1\nAlice"
// and gave the login "Alice", whose account row (AccountContent) is another
// row, under another key: dbctl's account list and config show then named
// the row by a login that reads a different one.
func TestParseAccountContentCanonical(t *testing.T) {
	for _, bad := range []string{"twinmx-account/1\nAlice", "twinmx-account/1\nbob@EXAMPLE.org"} {
		if l, err := ParseAccountContent([]byte(bad)); err == nil {
			t.Errorf("ParseAccountContent(%q) = %q, accepted", bad, l)
		}
	}
	for _, bad := range []string{"twinmx-password/1\nBob\n$argon2id$x", "twinmx-password/1\n\n$argon2id$x", "twinmx-password/1\na b\n$argon2id$x"} {
		if l, h, err := ParsePasswordContent([]byte(bad)); err == nil {
			t.Errorf("ParsePasswordContent(%q) = %q, %q, accepted", bad, l, h)
		}
	}
}

// TestHeaderFilterColumnASCII: only ASCII is lower-cased. HeaderFilterColumn
// lower-cased with Unicode rules, which map the Kelvin sign U+212A to "k":
// it accepted that name and made the filter of the field "k".
func TestHeaderFilterColumnASCII(t *testing.T) {
	for _, bad := range []string{"\u212a", "X-\u212aey"} {
		if col, err := HeaderFilterColumn(bad); err == nil {
			t.Errorf("HeaderFilterColumn(%q) = %q, accepted", bad, col)
		}
	}
}
