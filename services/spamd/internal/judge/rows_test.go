package judge

import (
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

func TestParseThrowIn(t *testing.T) {
	mk := model.KeyOf(model.Mail, []byte("m"))
	rec := "twinmx-throw-in/1\nsession: s\nattempt: 2\ntime: 2026-11-29T10:00:00.5Z\nclient: 192.0.2.7:4242\nhelo: mx.example\ntls: none\nfrom: <a@b.example>\nrcpt: u@x.test\nrcpt: v@x.test\nrefused: w@x.test\nsize: 10\nmail: " + mk.String() + "\n"
	a, err := ParseThrowIn([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Time.Equal(time.Date(2026, 11, 29, 10, 0, 0, 5e8, time.UTC)) || a.Client != "192.0.2.7" || a.Helo != "mx.example" ||
		a.From != "a@b.example" || len(a.Rcpts) != 2 || !a.HasMail || a.Mail != mk {
		t.Fatalf("ParseThrowIn = %+v", a)
	}
	for _, bad := range []string{"", "other/1\ntime: 2026-11-29T10:00:00Z", "twinmx-throw-in/1\nclient: x", "twinmx-throw-in/1\ntime: yesterday",
		"twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nmail: nothex"} {
		if _, err := ParseThrowIn([]byte(bad)); err == nil {
			t.Errorf("ParseThrowIn(%q) accepted", bad)
		}
	}
}

func TestNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77": "192.0.2.0/24", "::ffff:192.0.2.77": "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64", "not-an-ip": "not-an-ip",
	} {
		if got := Network(in); got != want {
			t.Errorf("Network(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseThrowIn(f *testing.F) {
	f.Add([]byte("twinmx-throw-in/1\ntime: 2026-11-29T10:00:00Z\nclient: [::1]:25\nrcpt: a@b\nmail: " + model.KeyOf(model.Mail, nil).String()))
	f.Add([]byte("twinmx-throw-in/1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseThrowIn(b)
		if err == nil && a.Time.IsZero() {
			t.Fatal("a record without a time parsed")
		}
	})
}
