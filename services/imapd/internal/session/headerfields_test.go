package session

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// A header with a line that is not a field (an mbox "From " line, a
// broken mailer) still gives its fields to HEADER.FIELDS: go-imap's
// strict reader gave an empty section for the whole header.
func TestHeaderFieldsOfMalformedHeader(t *testing.T) {
	raw := []byte("From someone@example.net  Tue Jul 23 21:23:35 2002\r\n" +
		"Message-ID: <m1@example.net>\r\n" +
		"Subject: first\r\n  folded\r\n" +
		"this line is no field\r\n" +
		"From: A <a@example.net>\r\n" +
		"X-Empty:\r\n" +
		"\r\nbody\r\n")
	tests := []struct {
		name string
		sec  imap.FetchItemBodySection
		want string
	}{
		{"fields", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"message-id", "SUBJECT", "from"}},
			"Message-ID: <m1@example.net>\r\nSubject: first\r\n  folded\r\nFrom: A <a@example.net>\r\n\r\n"},
		{"fields, none there", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"date"}}, "\r\n"},
		{"fields.not", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"subject", "from"}},
			"Message-ID: <m1@example.net>\r\nX-Empty:\r\n\r\n"},
		{"fields, partial", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject"},
			Partial: &imap.SectionPartial{Offset: 9, Size: 5}}, "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(BodySection(raw, &tt.sec)); got != tt.want {
				t.Fatalf("BodySection(%+v) = %q, want %q", tt.sec, got, tt.want)
			}
		})
	}
}

// On every mail of the corpus whose header go-imap's strict reader takes,
// as sent and as an mbox holds it (a "From " line first),
// HEADER.FIELDS and HEADER.FIELDS.NOT give exactly go-imap's bytes; on the
// others (which it answers with nothing) they give the named fields.
func TestHeaderFieldsMatchGoIMAPOnCorpus(t *testing.T) {
	mails := corpusMails(t)
	sections := []imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "Priority", "X-Priority", "References", "Newsgroups", "In-Reply-To", "Content-Type", "Reply-To"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"received"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Received", "Subject", "x-mailer"}},
	}
	same, lenient, lenientWire := 0, 0, 0
	for name, archived := range mails {
		// As it came by SMTP (the mbox "From " line of the archive
		// dropped), and as imported from the mbox with the line.
		wire := archived
		if bytes.HasPrefix(wire, []byte("From ")) {
			wire = wire[bytes.IndexByte(wire, '\n')+1:]
		}
		for i := range 2 * len(sections) {
			raw := wire
			if i >= len(sections) {
				raw = archived
			}
			i %= len(sections)
			sec := &sections[i]
			got := BodySection(raw, sec)
			strict := imapserver.ExtractBodySection(bytes.NewReader(raw[:headerEnd(raw)]), sec)
			if strict != nil {
				if !bytes.Equal(got, strict) {
					t.Fatalf("%s, %+v: got %q, go-imap gives %q", name, sec, got, strict)
				}
				same++
				continue
			}
			lenient++
			if len(raw) == len(wire) {
				lenientWire++
			}
			checkLenient(t, name, raw[:headerEnd(raw)], sec, got)
		}
	}
	t.Logf("%d mails, each as sent and with an mbox From line: %d sections as go-imap's, %d where go-imap gives nothing (%d of the mails as sent)",
		len(mails), same, lenient, lenientWire)
	if lenient == 0 {
		t.Fatal("no corpus mail has a header go-imap refuses; the lenient path is untested")
	}
}

// checkLenient checks a HEADER.FIELDS(.NOT) section of a header go-imap
// refuses, line by line: it ends with the blank line; each of its lines
// is a line of the header; no line of a field left out by .NOT is in it;
// every line of the header that starts a field HEADER.FIELDS names is.
func checkLenient(t *testing.T, name string, header []byte, sec *imap.FetchItemBodySection, got []byte) {
	t.Helper()
	if !bytes.HasSuffix(got, []byte("\r\n\r\n")) && string(got) != "\r\n" {
		t.Fatalf("%s, %+v: %q does not end with a blank line", name, sec, got)
	}
	lines := strings.SplitAfter(string(header), "\r\n")
	starts := func(line string, names []string) bool {
		for _, n := range names {
			if len(line) > len(n) && strings.EqualFold(line[:len(n)], n) && line[len(n)] == ':' {
				return true
			}
		}
		return false
	}
	for _, l := range strings.SplitAfter(strings.TrimSuffix(string(got), "\r\n"), "\r\n") {
		if l != "" && !strings.Contains(string(header), l) {
			t.Fatalf("%s, %+v: line %q is not in the header", name, sec, l)
		}
		if starts(l, sec.HeaderFieldsNot) {
			t.Fatalf("%s, %+v: line %q should be left out", name, sec, l)
		}
	}
	for _, l := range lines {
		if starts(l, sec.HeaderFields) && !strings.Contains(string(got), l) {
			t.Fatalf("%s, %+v: field line %q missing from %q", name, sec, l, got)
		}
	}
}

// corpusMails reads shared/corpus's tarball (or $TWINMX_CORPUS, a
// tarball). It skips only when the file is missing and
// TWINMX_REQUIRE_CORPUS is unset (CI sets it).
func corpusMails(t *testing.T) map[string][]byte {
	t.Helper()
	p := os.Getenv("TWINMX_CORPUS")
	if p == "" || !strings.HasSuffix(p, ".tar.gz") {
		p = filepath.Join("..", "..", "..", "..", "..", "shared", "corpus", "spamassassin-train.tar.gz")
	}
	f, err := os.Open(p)
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_CORPUS") == "" {
			t.Skipf("corpus %s missing and TWINMX_REQUIRE_CORPUS unset: %v", p, err)
		}
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	mails := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, ".eml") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		// As stored: smtpd takes lines ending in CRLF only.
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		mails[h.Name] = b
	}
	if len(mails) < 4000 {
		t.Fatalf("corpus %s has %d mails, want the 4214 of shared/corpus", p, len(mails))
	}
	return mails
}
