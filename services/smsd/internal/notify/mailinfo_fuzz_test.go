package notify

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// checkText is what every text smsd takes from a mail must be: valid
// UTF-8 without control characters.
func checkText(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		t.Fatalf("%s %q is not valid UTF-8 without controls", what, s)
	}
}

// FuzzHeaderInfo feeds header sections (mail from anybody) to headerInfo:
// it must not panic, and its results are clean text and a lower-case
// address.
func FuzzHeaderInfo(f *testing.F) {
	for _, s := range []string{
		"From: a@b.example\r\nSubject: hi\r\n",
		"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Customer.Example>\r\nSubject: =?utf-8?q?Server_l=C3=A4uft?=\r\n",
		"From: \"x, y\" <x@y.example>, z@w.example\r\n",
		"From: <A@B>\r\nSubject: =?iso-8859-1?b?5A==?= =?x-unknown?q?=FF?=\r\n",
		"Subject: =?utf-8?q?a=00b=1B?=\r\n",
		"From: broken <\r\nSubject: folded\r\n line\r\n",
		"no colon\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		from, subject := headerInfo(header)
		checkText(t, "subject", subject)
		if from != strings.ToLower(from) {
			t.Fatalf("from %q is not lower case", from)
		}
	})
}

// FuzzFirstLine feeds a header and a body to firstLine: nested multipart,
// base64 and quoted-printable from anybody must not panic, and the line
// is clean, trimmed text.
func FuzzFirstLine(f *testing.F) {
	for _, s := range [][2]string{
		{"From: a@b\r\n", "\r\n\r\n  hello  \r\nworld\r\n"},
		{"Content-Transfer-Encoding: base64\r\n", "SGVsbG8g\r\nd29ybGQK\r\n"},
		{"Content-Transfer-Encoding: quoted-printable\r\n", "a=\r\nb=C3=BC=00\r\n"},
		{"Content-Type: multipart/alternative; boundary=xx\r\n",
			"--xx\r\nContent-Type: text/html\r\n\r\n<p>no</p>\r\n--xx\r\nContent-Type: text/plain\r\n\r\nyes\r\n--xx--\r\n"},
		{"Content-Type: multipart/mixed; boundary=a\r\n",
			"--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\ndeep\r\n--b--\r\n--a--\r\n"},
		{"Content-Type: multipart/mixed\r\n", "--\r\n\r\nx\r\n"},
		{"Content-Type: text/html\r\n", "<p>x</p>"},
		{"", "\x00\x1b\r\n\xff\xfe"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, header, body []byte) {
		l := firstLine(header, body)
		checkText(t, "line", l)
		if l != strings.TrimSpace(l) {
			t.Fatalf("line %q is not trimmed", l)
		}
	})
}
