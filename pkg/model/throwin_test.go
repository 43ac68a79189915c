package model

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestThrowInRoundTrip(t *testing.T) {
	in := Attempt{Session: "s1", Attempt: 2, Time: time.Date(2026, 11, 29, 10, 0, 0, 5e8, time.UTC),
		Client: "192.0.2.7:4242", Helo: "mx.example", TLS: "none", From: "a@b.example",
		Rcpts: []string{"u@x.test", "v@x.test"}, Refused: []string{"w@x.test"}, Size: 10,
		Mail: KeyOf(Mail, []byte("m")), HasMail: true, Received: KeyOf(Received, []byte("r")), HasReceived: true}
	out, err := ParseThrowIn(in.Content())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	if out.ClientIP() != "192.0.2.7" {
		t.Errorf("ClientIP = %q", out.ClientIP())
	}
	early := Attempt{Session: "s2", Time: in.Time, Client: "[2001:db8::1]:25", EarlyTalker: true}
	out, err = ParseThrowIn(early.Content())
	if err != nil || !reflect.DeepEqual(early, out) || out.ClientIP() != "2001:db8::1" {
		t.Fatalf("early talker: %+v, %v", out, err)
	}
}

// TestParseThrowInWritten reads a record as smtpd wrote it before the
// type existed (angle brackets around the sender, no received line).
func TestParseThrowInWritten(t *testing.T) {
	mk := KeyOf(Mail, []byte("m"))
	rec := "twinmx-throw-in/1\nsession: s\nattempt: 2\ntime: 2026-11-29T10:00:00.5Z\nclient: 192.0.2.7:4242\nhelo: mx.example\ntls: none\nfrom: <a@b.example>\nrcpt: u@x.test\nrcpt: v@x.test\nrefused: w@x.test\nsize: 10\nmail: " + mk.String() + "\nnew-field: ignored\n"
	a, err := ParseThrowIn([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Time.Equal(time.Date(2026, 11, 29, 10, 0, 0, 5e8, time.UTC)) || a.ClientIP() != "192.0.2.7" || a.Helo != "mx.example" ||
		a.From != "a@b.example" || len(a.Rcpts) != 2 || !a.HasMail || a.Mail != mk || a.HasReceived {
		t.Fatalf("ParseThrowIn = %+v", a)
	}
	for _, bad := range []string{"", "other/1\ntime: 2026-11-29T10:00:00Z", "twinmx-throw-in/1\nclient: x", "twinmx-throw-in/1\ntime: yesterday",
		"twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nmail: nothex", "twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nreceived: nothex"} {
		if _, err := ParseThrowIn([]byte(bad)); err == nil {
			t.Errorf("ParseThrowIn(%q) accepted", bad)
		}
	}
}

// TestParseThrowInTimeRange: a time whose UTC form has no four-digit
// year is refused. ParseThrowIn took "0000-01-01T00:00:00+01:00" and
// "9999-12-31T23:00:00-02:00", and Content wrote them in UTC as years -1
// and 10000, which no RFC 3339 reader (ParseThrowIn included) takes back.
func TestParseThrowInTimeRange(t *testing.T) {
	for _, v := range []string{"0000-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"} {
		if a, err := ParseThrowIn([]byte(throwInRecord + "\ntime: " + v + "\n")); err == nil {
			t.Errorf("ParseThrowIn(time %s) = %v, accepted", v, a.Time)
		}
	}
	for _, v := range []string{"0000-01-01T00:00:00-01:00", "9999-12-31T23:00:00+02:00", "0000-01-01T00:00:00Z"} {
		a, err := ParseThrowIn([]byte(throwInRecord + "\ntime: " + v + "\n"))
		if err != nil {
			t.Fatalf("ParseThrowIn(time %s): %v", v, err)
		}
		if b, err := ParseThrowIn(a.Content()); err != nil || !b.Time.Equal(a.Time) {
			t.Errorf("time %s written as %q reads back as %v, %v", v, a.Content(), b.Time, err)
		}
	}
}

func FuzzParseThrowIn(f *testing.F) {
	f.Add([]byte("twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nclient: [::1]:25\nrcpt: a@b\nmail: " + KeyOf(Mail, nil).String()))
	f.Add([]byte("twinmx-throw-in/1\n"))
	f.Add(Attempt{Session: "s", Time: time.Unix(1e9, 0), Size: 1, HasMail: true, HasReceived: true}.Content())
	f.Add([]byte("twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nhelo: x\r\r\nfrom: <<a>>\nsize: -1\nmail: " + strings.ToUpper(KeyOf(Mail, nil).String()) + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseThrowIn(b)
		if err != nil {
			return
		}
		if a.Time.IsZero() {
			t.Fatal("a record without a time parsed")
		}
		// What parsed reads back the same once written again: a second
		// round writes the bytes of the first, so no value (a CR a line
		// kept, say) changes its meaning on the way.
		c := a.Content()
		a2, err := ParseThrowIn(c)
		if err != nil {
			t.Fatalf("written again, it does not parse: %v", err)
		}
		if c2 := a2.Content(); !bytes.Equal(c2, c) {
			t.Fatalf("ParseThrowIn(%q) written again is %q, then %q", b, c, c2)
		}
	})
}

// TestThrowInContentBytes pins the stored record byte for byte: rows
// written by any smtpd version must read alike.
func TestThrowInContentBytes(t *testing.T) {
	k := KeyOf(Body, []byte("x"))
	a := Attempt{Session: "ab12-7", Attempt: 2, Time: time.Date(2026, 11, 30, 16, 5, 4, 123456789, time.FixedZone("x", 3600)),
		Client: "192.0.2.1:4567", Helo: "client.test", TLS: "none", From: "a@b.test", Rcpts: []string{"c@d.test", "e@d.test"},
		Refused: []string{"x@d.test 550"}, Size: 10240, Mail: k, HasMail: true, Received: k, HasReceived: true}
	want := "twinmx-throw-in/1\nsession: ab12-7\nattempt: 2\ntime: 2026-11-30T15:05:04.123456789Z\nclient: 192.0.2.1:4567\n" +
		"helo: client.test\ntls: none\nfrom: a@b.test\nrcpt: c@d.test\nrcpt: e@d.test\nrefused: x@d.test 550\nsize: 10240\n" +
		"mail: " + k.String() + "\nreceived: " + k.String() + "\n"
	if got := string(a.Content()); got != want {
		t.Errorf("Content() =\n%s\nwant\n%s", got, want)
	}
	early := Attempt{Session: "s", Time: time.Unix(0, 0), Client: "c", EarlyTalker: true}
	if got, want := string(early.Content()), "twinmx-throw-in/1\nsession: s\ntime: 1970-01-01T00:00:00Z\nclient: c\nearly-talker: yes\n"; got != want {
		t.Errorf("Content() =\n%s\nwant\n%s", got, want)
	}
}

// TestThrowInContentOneLine: a line break in a value must not start a line
// of its own. Content wrote values as given, so a HELO of
// "x\nmail: <key>" read back as an attempt that stored that mail (spamd
// judges it, dbctl recover-acks acknowledges by it).
func TestThrowInContentOneLine(t *testing.T) {
	k := KeyOf(Mail, []byte("forged"))
	a := Attempt{Session: "s\r", Time: time.Unix(1e9, 0), Client: "c", Helo: "x\nmail: " + k.String(),
		From: "a@b\r\nreceived: " + k.String(), Rcpts: []string{"r@x\nrcpt: other@x"}}
	got, err := ParseThrowIn(a.Content())
	if err != nil {
		t.Fatal(err)
	}
	if got.HasMail || got.HasReceived || len(got.Rcpts) != 1 {
		t.Fatalf("a value's line break made fields of its own: %+v", got)
	}
	if got.Session != "s?" || got.Helo != "x?mail: "+k.String() || got.From != "a@b??received: "+k.String() || got.Rcpts[0] != "r@x?rcpt: other@x" {
		t.Errorf("values read back as %q %q %q %q, want CR and LF as '?'", got.Session, got.Helo, got.From, got.Rcpts)
	}
}
