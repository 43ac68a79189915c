package model

import (
	"bytes"
	"errors"
	"testing"
)

func TestWithTraceJoinsToFieldPlusRaw(t *testing.T) {
	raws := []string{
		"Received: from a by b; x\r\nSubject: s\r\nReceived: from c\r\n\r\nbody\r\n",
		"Subject: no received\n\nbody\n",
		"",
		"Received: only\r\n",
	}
	field := []byte("Received: from client (client [127.0.0.1]) by mx.example; Sun, 29 Nov 2026 00:00:00 +0000\r\n")
	for _, raw := range raws {
		p := Split([]byte(raw))
		q, err := p.WithTrace(field)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		got, err := Join(q)
		if err != nil {
			t.Fatalf("%q: join: %v", raw, err)
		}
		if want := append(append([]byte{}, field...), raw...); !bytes.Equal(got, want) {
			t.Errorf("%q: joined %q, want %q", raw, got, want)
		}
		if !bytes.Equal(q.Header, p.Header) {
			t.Errorf("%q: header changed", raw)
		}
		// Splitting the traced mail gives the same encoding: one canonical form.
		if r := Split(got); !bytes.Equal(r.Received, q.Received) {
			t.Errorf("%q: received encoding differs from a fresh split", raw)
		}
	}
}

// TestWithReturnPath: smtpd's final-delivery fields, Return-Path above its
// Received, join to both followed by the raw mail, and the mail key stays
// that of the raw mail: the Return-Path belongs to the delivery.
func TestWithReturnPath(t *testing.T) {
	raw := []byte("Received: from x by y; z\r\nSubject: s\r\n\r\nbody\r\n")
	rows := NewMailRows(raw)
	rcvd := []byte("Received: from client by mx; now\r\n")
	rp := []byte("Return-Path: <a@b.example>\r\n")
	p, err := rows.Parts.WithTrace(rcvd)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = p.WithTrace(rp); err != nil {
		t.Fatal(err)
	}
	got, err := Join(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(rp) + string(rcvd) + string(raw); string(got) != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	fs, err := ReceivedFields(p.Received)
	if err != nil || len(fs) != 3 || !bytes.Equal(fs[0].Raw, rp) || fs[1].Index != 1 {
		t.Fatalf("fields %+v %v", fs, err)
	}
	if !bytes.Equal(p.Header, rows.Parts.Header) {
		t.Error("header changed")
	}
	// The exported mail, its leading Return-Path cut, has the stored key.
	rest, ok := CutReturnPath(got)
	if !ok || NewMailRows(rest).MailKey != rows.MailKey {
		t.Errorf("CutReturnPath: %v, key %v want %v", ok, NewMailRows(rest).MailKey, rows.MailKey)
	}
}

// TestOtherTraceRecord: a received row holding a field this version does
// not write (a later version's, say Delivered-To) is read and joined, not
// refused: readers stay compatible with the next trace field.
func TestOtherTraceRecord(t *testing.T) {
	p := Split([]byte("Subject: s\r\n\r\nbody\r\n"))
	p.Received = appendRecord(appendRecord(nil, 0, []byte("Delivered-To: jo@example.org\r\n")), 1, []byte("Received: from x by y; z\r\n"))
	got, err := Join(p)
	if err != nil || string(got) != "Delivered-To: jo@example.org\r\nReceived: from x by y; z\r\nSubject: s\r\n\r\nbody\r\n" {
		t.Fatalf("Join: %q %v", got, err)
	}
	if fs, err := ReceivedFields(p.Received); err != nil || len(fs) != 2 {
		t.Fatalf("ReceivedFields: %d fields, %v", len(fs), err)
	}
	// The writer stays strict: smtpd adds Received and Return-Path only.
	if _, err := p.WithTrace([]byte("Delivered-To: jo@example.org\r\n")); !errors.Is(err, ErrBadReceived) {
		t.Errorf("WithTrace took a Delivered-To field: %v", err)
	}
}

func TestCutReturnPath(t *testing.T) {
	for _, c := range []struct {
		raw, rest string
		ok        bool
	}{
		{"Return-Path: <a@b>\r\nSubject: s\r\n\r\nb", "Subject: s\r\n\r\nb", true},
		{"return-path :\r\n <a@b>\nX: y\n", "X: y\n", true},
		{"Return-Path: <>\r\n", "", true},
		{"Return-Path: <a@b>", "Return-Path: <a@b>", false}, // no line end: the whole mail
		{"Subject: s\r\nReturn-Path: <a@b>\r\n\r\n", "Subject: s\r\nReturn-Path: <a@b>\r\n\r\n", false},
		{"\r\nReturn-Path: <a@b>\r\n", "\r\nReturn-Path: <a@b>\r\n", false}, // in the body
		{"Return-Pathx: y\r\n", "Return-Pathx: y\r\n", false},
		{"", "", false},
	} {
		rest, ok := CutReturnPath([]byte(c.raw))
		if string(rest) != c.rest || ok != c.ok {
			t.Errorf("%q: %q %v, want %q %v", c.raw, rest, ok, c.rest, c.ok)
		}
	}
}

// TestWithTraceTwoFields: several fields at once go in the order given,
// as the same fields added one by one, last first.
func TestWithTraceTwoFields(t *testing.T) {
	p := Split([]byte("Received: from x by y; z\r\nSubject: s\r\n\r\nbody\r\n"))
	rp, rcvd := []byte("Return-Path: <a@b>\r\n"), []byte("Received: from c by mx; now\r\n")
	both, err := p.WithTrace(rp, rcvd)
	if err != nil {
		t.Fatal(err)
	}
	one, err := p.WithTrace(rcvd)
	if err == nil {
		one, err = one.WithTrace(rp)
	}
	if err != nil || !bytes.Equal(both.Received, one.Received) {
		t.Fatalf("WithTrace(rp, rcvd) = %q, one by one %q (%v)", both.Received, one.Received, err)
	}
}

// TestWithTraceRefusesLeadingContinuation: a mail that begins with a
// continuation line would glue it to the field added before it.
func TestWithTraceRefusesLeadingContinuation(t *testing.T) {
	if _, err := Split([]byte(" lead\r\nSubject: s\r\n\r\n")).WithTrace([]byte("Received: a\r\n")); !errors.Is(err, ErrBadReceived) {
		t.Fatalf("err %v, want ErrBadReceived", err)
	}
}

func TestWithTraceRefusesBadField(t *testing.T) {
	for _, f := range []string{"", "Subject: x\r\n", "Received: x", "Received: a\r\nX: b\r\n", "Return-Path: <a@b>", "Return-Path: <a@b>\r\nX: b\r\n"} {
		if _, err := Split([]byte("A: b\r\n\r\n")).WithTrace([]byte(f)); !errors.Is(err, ErrBadReceived) {
			t.Errorf("%q: err %v, want ErrBadReceived", f, err)
		}
	}
}

func TestReceivedColumnRoundTrip(t *testing.T) {
	k := KeyOf(Received, []byte("x"))
	name := ReceivedColumn(k)
	if err := CheckName(name); err != nil {
		t.Fatalf("column name %q invalid: %v", name, err)
	}
	got, ok := ParseReceivedColumn(name)
	if !ok || got != k {
		t.Fatalf("parse %q = %v %v", name, got, ok)
	}
	for _, bad := range []string{"ack", "rcvd.", "rcvd.abc", name + "a", "rcvd." + name[5:len(name)-1] + "1"} {
		if _, ok := ParseReceivedColumn(bad); ok {
			t.Errorf("%q parsed as a link", bad)
		}
	}
	k2 := KeyOf(Received, []byte("y"))
	st := State{Cols: map[string]uint64{ColAcknowledged: FlagSet, ReceivedColumn(k): 200, ReceivedColumn(k2): 100}}
	if got, ok := AcknowledgedReceived(st); !ok || got != k2 {
		t.Errorf("acknowledged received = %v %v, want the earlier link", got, ok)
	}
	if _, ok := AcknowledgedReceived(State{}); ok {
		t.Error("link found in an empty state")
	}
}
