package confmail

import (
	"net/mail"
	"strings"
	"testing"
)

func TestBodyText(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"plain", "Subject: x\n\nblock u@x.test @a.example\n", "block u@x.test @a.example\n"},
		{"crlf and signature", "Subject: x\r\n\r\nblock u@x.test @a.example\r\n-- \r\nBoss\r\nadmin add evil@x.test\r\n", "block u@x.test @a.example\n"},
		{"quoted-printable", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nrule set u@x.test r phone +4917012345 template \"{from}=3A =\n{subject}\"\n",
			"rule set u@x.test r phone +4917012345 template \"{from}: {subject}\"\n"},
		{"base64", "Content-Transfer-Encoding: base64\n\nYmxvY2sgdUB4LnRlc3Qg\nQGEuZXhhbXBsZQo=\n", "block u@x.test @a.example\n"},
		{"multipart: first text/plain part", "Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/html\n\n<p>no</p>\n--B\nContent-Type: text/plain\n\nzone u@x.test UTC\n--B--\n", "zone u@x.test UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := mail.ReadMessage(strings.NewReader(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			got, err := bodyText(msg)
			if err != nil || strings.TrimRight(got, "\n") != strings.TrimRight(tt.want, "\n") {
				t.Errorf("bodyText = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	msg, _ := mail.ReadMessage(strings.NewReader("Content-Type: text/html\n\n<p>block</p>\n"))
	if _, err := bodyText(msg); err == nil {
		t.Error("bodyText accepted a text/html mail")
	}
}

func TestCutSecret(t *testing.T) {
	text, secret := cutSecret("block u@x.test @a.example\n  Secret:  correct horse \nallow u@x.test b@c.example\n")
	if secret != "correct horse" {
		t.Errorf("secret = %q", secret)
	}
	// The line is blanked, so the others keep their numbers.
	if text != "block u@x.test @a.example\n\nallow u@x.test b@c.example\n" {
		t.Errorf("text = %q", text)
	}
	if _, s := cutSecret("block u@x.test @a.example\n"); s != "" {
		t.Errorf("secret without a secret line: %q", s)
	}
}

func TestIsConfigAddress(t *testing.T) {
	m := New(Config{})
	for in, want := range map[string]bool{"config@x.test": true, "Config@y.test": true, "configs@x.test": false, "u@config.test": false} {
		if got := m.IsConfigAddress(in); got != want {
			t.Errorf("IsConfigAddress(%q) = %v, want %v", in, got, want)
		}
	}
	m = New(Config{Address: "cfg@x.test"})
	if m.IsConfigAddress("config@x.test") || !m.IsConfigAddress("cfg@x.test") {
		t.Error("--config-address not honoured")
	}
}
