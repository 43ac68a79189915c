package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

func TestSearchBodyDecodes(t *testing.T) {
	raw := "Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=\r\n" +
		"From: =?utf-8?b?SsO2cmc=?= <j@example.net>\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"preamble-word\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"aGVsbG8gYmFzZTY0\r\nd29ybGQ=\r\n" + // "hello base64world"
		"--b\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<p>soft=\r\nbreak and Stra=DFe</p>\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"c2VjcmV0IGJpbmFyeQ==\r\n" + // "secret binary"
		"--b\r\nContent-Type: message/rfc822\r\n\r\n" +
		"Subject: inner =?utf-8?q?caf=C3=A9?=\r\n\r\ninner body text\r\n" +
		"--b--\r\nepilogue-footer\r\n"
	headers, b := searchText(mimetree.Parse([]byte(raw), mimetree.Limits{}))
	body := string(b)
	for _, want := range []string{"hello base64world", "softbreak and Straße", "inner body text"} {
		if !strings.Contains(body, want) {
			t.Errorf("searchText's body lacks %q:\n%s", want, body)
		}
	}
	for _, not := range []string{"aGVsbG8", "preamble-word", "epilogue-footer", "secret binary", "c2VjcmV0", "Content-Type", "=DF", "inner café"} {
		if strings.Contains(body, not) {
			t.Errorf("searchText's body holds %q:\n%s", not, body)
		}
	}
	// TEXT also reads every header: the mail's, its parts' and the
	// enclosed mail's, decoded.
	for _, want := range []string{"Subject: Grüße aus Köln", "Content-Transfer-Encoding: quoted-printable", "charset=iso-8859-1", "Subject: inner café"} {
		if !strings.Contains(string(headers), want) {
			t.Errorf("search headers lack %q:\n%s", want, headers)
		}
	}
	hdr := []byte(raw[:headerEnd([]byte(raw))])
	if got := searchHeader(hdr, "subject"); len(got) != 1 || string(got[0]) != "Grüße aus Köln" {
		t.Errorf("Subject decoded to %q", got)
	}
	if got := searchHeader(hdr, "FROM"); len(got) != 1 || string(got[0]) != "Jörg <j@example.net>" {
		t.Errorf("From decoded to %q", got)
	}
	if got := searchHeader(hdr, ""); len(got) != 3 {
		t.Errorf("all fields: %q", got)
	}
}

// Broken encodings are still searched: what does not decode is taken as
// it is, and nothing panics.
func TestSearchBodyBroken(t *testing.T) {
	for _, raw := range []string{
		"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all!!!\r\n",
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ escape and =\r\n",
		"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nplain words\r\n",
		"Subject: =?bogus?x?zzz?=\r\n\r\nbody\r\n",
		"",
	} {
		searchText(mimetree.Parse([]byte(raw), mimetree.Limits{}))
		_ = searchHeader([]byte(raw), "subject")
	}
	_, body := searchText(mimetree.Parse([]byte("Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nplain words\r\n"), mimetree.Limits{}))
	if !strings.Contains(string(body), "plain words") {
		t.Errorf("unknown charset: %q", body)
	}
}

func FuzzSearchText(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n"))
	f.Add([]byte("Subject: =?utf-8?q?a=C3=A9?=\r\nContent-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=FF=FEa=00\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if h, b := searchText(mimetree.Parse(raw, mimetree.Limits{})); len(h) > maxSearchText || len(b) > maxSearchText {
			t.Fatal("search text over its bound")
		}
		searchHeader(raw[:headerEnd(raw)], "")
	})
}

// BINARY undoes the transfer encoding only, never the charset (RFC
// 3516): SEARCH's charset conversion must not leak into it. It did once,
// through go-message/charset's global registration: BINARY.SIZE of an
// ISO-8859-1 part grew by one byte for each 8-bit byte.
func TestBinaryKeepsCharset(t *testing.T) {
	latin := "Gr\xfc\xdfe aus K\xf6ln\r\n"
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + latin +
		"--b\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b--\r\n")
	m := &parts{raw: raw}
	// The line end before a delimiter belongs to the delimiter (RFC 2046).
	if got, want := string(binaryOf(t, m, 1)), strings.TrimSuffix(latin, "\r\n"); got != want {
		t.Errorf("BINARY[1] = %q, want the part as sent, %q", got, want)
	}
	if got := string(binaryOf(t, m, 2)); got != "Gr\xfc\xdfe" {
		t.Errorf("BINARY[2] = %q, want the quoted-printable undone only", got)
	}
	// SEARCH, on the other hand, reads it as UTF-8.
	if _, body := searchText(mimetree.Parse(raw, mimetree.Limits{})); !strings.Contains(string(body), "Grüße aus Köln") {
		t.Errorf("search text %q lacks the decoded words", body)
	}
}

// TestBinaryRefusesWhatDoesNotDecode: a base64 part with a mailing
// list's footer after it (spam-2-01072 of the corpus) and a part in an
// unknown transfer encoding are refused with PARSE and UNKNOWN-CTE (RFC
// 3516 §4.2), not shown as an empty part; a part that decodes is not.
func TestBinaryRefusesWhatDoesNotDecode(t *testing.T) {
	raw := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n" +
		"--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n" +
		"Spamassassin-Sightings@lists.sourceforge.net\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-martian\r\n\r\nzork\r\n--b--\r\n")
	m := &parts{raw: raw}
	if got, err := m.binarySection([]int{1}); err != nil || string(got) != "hello" {
		t.Errorf("BINARY[1] = %q, %v; want hello", got, err)
	}
	for part, code := range map[int]imap.ResponseCode{2: imap.ResponseCodeParse, 3: imap.ResponseCodeUnknownCTE} {
		got, err := m.binarySection([]int{part})
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != code {
			t.Errorf("BINARY[%d] = %q, %v; want NO [%s]", part, got, err, code)
		}
	}
}

func binaryOf(t *testing.T, m *parts, part int) []byte {
	t.Helper()
	b, err := m.binarySection([]int{part})
	if err != nil {
		t.Fatalf("BINARY[%d]: %v", part, err)
	}
	return b
}
