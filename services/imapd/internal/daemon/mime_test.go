package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

// deepMail nests n levels of multipart/mixed around one text part.
func deepMail(n int) string {
	var b strings.Builder
	b.WriteString("From: a@b.example\r\nSubject: deep\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%x\r\n\r\n--%x\r\n", i, i)
	}
	b.WriteString("\r\nleaf\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--%x--\r\n", i)
	}
	return b.String()
}

// deepMessage nests n levels of message/rfc822 (go-imap copied each
// level's body: quadratic memory).
func deepMessage(n int) string {
	return "Subject: deep message\r\n" + strings.Repeat("Content-Type: message/rfc822\r\n\r\n", n) + "Subject: in\r\n\r\nleaf\r\n"
}

// wideMail has n sibling parts.
func wideMail(n int) string {
	var b strings.Builder
	b.WriteString("Subject: wide\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b\r\n\r\n%d\r\n", i)
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// bsDepth returns how many multipart or message levels bs opens and the
// leaf at the bottom of its first parts.
func bsDepth(bs imap.BodyStructure) (int, *imap.BodyStructureSinglePart) {
	n := 0
	for {
		switch b := bs.(type) {
		case *imap.BodyStructureMultiPart:
			bs = b.Children[0]
		case *imap.BodyStructureSinglePart:
			if b.MessageRFC822 == nil {
				return n, b
			}
			bs = b.MessageRFC822.BodyStructure
		}
		n++
	}
}

// TestPathologicalMIME (TEST-CATALOG 34): a mail nested 100,000 deep
// (multipart and message/rfc822) and one of 100,000 parts. FETCH of
// ENVELOPE, BODYSTRUCTURE, BODY[] and deep BODY[1.1...] sections answers
// within the bounds of package mimetree (100 levels, 10,000 parts),
// BODY[] stays byte-exact, and imapd neither crashes nor hangs (go-imap's
// extractor needed 22 s for 10,000 levels and grows with the square).
func TestPathologicalMIME(t *testing.T) {
	k := start(t)
	mails := []string{deepMail(100_000), deepMessage(100_000), wideMail(100_000)}
	for _, m := range mails {
		k.deliver(m)
	}
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	whole := &imap.FetchItemBodySection{Peek: true}
	ones := func(n int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = 1
		}
		return p
	}
	// The deepest part opened, and far past the bound (the command line
	// bounds the path: go-imap reads at most 50 KiB).
	atBound := &imap.FetchItemBodySection{Peek: true, Part: ones(mimetree.DefaultMaxDepth)}
	past := &imap.FetchItemBodySection{Peek: true, Part: ones(20_000)}
	for i, raw := range mails {
		seq := uint32(i + 1)
		msgs, err := hangGuard(c, func() ([]*imapclient.FetchMessageBuffer, error) {
			return c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{
				Envelope: true, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
				BodySection: []*imap.FetchItemBodySection{whole, atBound, past},
			}).Collect()
		})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("mail %d: FETCH: %v (%d answers)", seq, err, len(msgs))
		}
		m := msgs[0]
		if got := m.FindBodySection(whole); !bytes.Equal(got, []byte(raw)) || m.RFC822Size != int64(len(raw)) {
			t.Errorf("mail %d: BODY[] %d bytes, RFC822.SIZE %d; want %d byte-exact", seq, len(got), m.RFC822Size, len(raw))
		}
		if want := []string{"deep", "deep message", "wide"}[i]; m.Envelope == nil || m.Envelope.Subject != want {
			t.Errorf("mail %d: ENVELOPE %+v, want subject %q", seq, m.Envelope, want)
		}
		depth, leaf := bsDepth(m.BodyStructure)
		switch seq {
		case 1, 2:
			if depth != mimetree.DefaultMaxDepth || leaf.Type != "application" || leaf.Subtype != "octet-stream" {
				t.Errorf("mail %d: BODYSTRUCTURE opens %d levels down to %s/%s, want %d and application/octet-stream", seq, depth, leaf.Type, leaf.Subtype, mimetree.DefaultMaxDepth)
			}
			// The leaf's size is its raw body, which BODY[1.1...] gives.
			if got := m.FindBodySection(past); len(got) == 0 || int64(len(got)) != int64(leaf.Size) {
				t.Errorf("mail %d: BODY[1.1...] past the bound is %d bytes, the leaf %d", seq, len(got), leaf.Size)
			}
		case 3:
			n := len(m.BodyStructure.(*imap.BodyStructureMultiPart).Children)
			if n != mimetree.DefaultMaxParts-1 {
				t.Errorf("wide mail: %d parts in BODYSTRUCTURE, want %d", n, mimetree.DefaultMaxParts-1)
			}
		}
	}
	wide := &imap.FetchItemBodySection{Peek: true, Part: []int{2}}
	msgs, err := c.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{wide}}).Collect()
	if err != nil || len(msgs) != 1 || string(msgs[0].FindBodySection(wide)) != "1" {
		t.Errorf("wide mail: BODY[2] = %v, %v; want \"1\"", msgs, err)
	}
	noPanics(t, k.reg)
}

// hangGuard runs a FETCH; if no answer came within two minutes (a cut
// response leaves the client waiting for its rest), it closes the
// client and fails. A guard against hanging, not a timed assertion.
func hangGuard(c *imapclient.Client, fetch func() ([]*imapclient.FetchMessageBuffer, error)) ([]*imapclient.FetchMessageBuffer, error) {
	type result struct {
		msgs []*imapclient.FetchMessageBuffer
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := fetch()
		done <- result{msgs, err}
	}()
	select {
	case r := <-done:
		return r.msgs, r.err
	case <-time.After(2 * time.Minute):
		c.Close()
		<-done
		return nil, errors.New("no complete answer within 2 minutes (hang guard)")
	}
}

// noPanics fails the test if imapd counted a panic.
func noPanics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == "twinmx_imapd_errors_total" && lp.GetValue() == "panic" && m.GetCounter().GetValue() > 0 {
					t.Errorf("imapd counted %v panics", m.GetCounter().GetValue())
				}
			}
		}
	}
}

// hostileMails have headers and MIME structures that broke or could break
// ENVELOPE and BODYSTRUCTURE (TEST-CATALOG 52).
var hostileMails = []struct{ name, raw string }{
	{"quote and backslash", "From: \"a\\\"b\\\\c\" <x@y.example>\r\nSubject: \"quoted\" \\back\\slash \"\r\nMessage-ID: <\"q\\\"@x>\r\n" +
		"Content-Type: text/plain; name=\"a\\\"b\\\\\"\r\nContent-Description: \"\\\r\n\r\nbody\r\n"},
	{"bare CR", "From: a\rb <a@b.example>\r\nSubject: one\rtwo\r\nTo: c@d\r.example\r\nContent-Type: text/plain; charset=\"x\ry\"\r\n\r\nbody\rbody\r\n"},
	{"NUL", "From: a\x00b <a\x00@b.example>\r\nSubject: a\x00b\r\nMessage-ID: <a\x00b@c>\r\nIn-Reply-To: <\x00@x>\r\n" +
		"Content-Type: text/plain; name=\"a\x00b\"\r\nContent-ID: <\x00>\r\nContent-Description: \x00\r\nContent-Transfer-Encoding: 7\x00bit\r\n\r\nb\x00dy\r\n"},
	{"8-bit", "From: J\xf6rg <j@x.example>\r\nSubject: caf\xe9 \xff\xfe\r\nTo: \xe4@\xe4.example\r\n" +
		"Content-Type: text/plain; charset=\"\xe9\"; name=\xe9\r\nContent-Description: \xe9t\xe9\r\nContent-Language: \xe9\r\n\r\n\xe9\r\n"},
	{"broken RFC 2047", "From: =?utf-8?q?unterminated <a@b.example>\r\nSubject: =?bogus?b?!!!?= =?utf-8?b?????= =?utf-8?q?=ZZ?= =?=?=\r\nTo: =?utf-8?B?\xff?= <c@d.example>\r\n\r\nbody\r\n"},
	{"empty multipart", "Subject: e\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n"},
	{"no delimiter", "Subject: e\r\nContent-Type: multipart/alternative; boundary=\"=Multipart Boundary 1\"\r\n\r\njust text\r\n"},
	{"no closing boundary", "Subject: c\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n"},
	{"missing boundary", "Subject: m\r\nContent-Type: multipart/mixed\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"},
	{"empty boundary", "Subject: m\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\nx\r\n----\r\n"},
	{"empty nested multipart and message", "Subject: n\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n" +
		"Content-Type: multipart/related; boundary=i\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n" +
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--o--\r\n"},
	{"garbage types", "Subject: g\r\nContent-Type: ;;;\"\r\nContent-Disposition: attachment; filename=\"unterminated\r\nContent-Language: ,,\r\n\r\nx\r\n"},
	{"header without colon", "Subject: h\r\nno colon here\r\n: empty\r\n\tcontinued\r\nFrom: a@b.example\r\n\r\nbody\r\n"},
	{"no blank line", "Subject: only a header\r\nContent-Type: multipart/mixed; boundary=b\r\n"},
	{"base64 garbage", "Subject: b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!*&^%$\r\n--b--\r\n"},
	{"digest", "Subject: d\r\nContent-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nSubject: \"in\\\r\n\r\nx\r\n--b\r\n--b--\r\n"},
}

// TestHostileHeaders (TEST-CATALOG 52): FETCH ENVELOPE BODYSTRUCTURE (and
// the extended form, BODY[1], BODY[1.MIME]) of mails with hostile headers
// and broken MIME: go-imap's strict client parses every answer, the
// connection stays, BODY[] is byte-exact and nothing panics. Before
// mimetree, an empty multipart made go-imap's writer panic in the middle
// of the answer (the client read a cut response).
func TestHostileHeaders(t *testing.T) {
	k := start(t)
	for _, m := range hostileMails {
		k.deliver(m.raw)
	}
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	whole := &imap.FetchItemBodySection{Peek: true}
	first := &imap.FetchItemBodySection{Peek: true, Part: []int{1}}
	mime := &imap.FetchItemBodySection{Peek: true, Part: []int{1}, Specifier: imap.PartSpecifierMIME}
	for i, m := range hostileMails {
		for _, ext := range []bool{false, true} {
			msgs, err := hangGuard(c, func() ([]*imapclient.FetchMessageBuffer, error) {
				return c.Fetch(imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{
					Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: ext},
					BodySection: []*imap.FetchItemBodySection{whole, first, mime},
				}).Collect()
			})
			if err != nil || len(msgs) != 1 {
				t.Errorf("%s (extended %v): FETCH: %v (%d answers)", m.name, ext, err, len(msgs))
				c = k.loggedIn(nil) // the connection may be broken
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got := msgs[0].FindBodySection(whole); string(got) != m.raw {
				t.Errorf("%s: BODY[] = %q, want %q", m.name, got, m.raw)
			}
			if msgs[0].Envelope == nil || msgs[0].BodyStructure == nil {
				t.Errorf("%s: no ENVELOPE or BODYSTRUCTURE", m.name)
			}
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP after the hostile mails: %v", err)
	}
	noPanics(t, k.reg)
}

// TestBinaryForIMAP4rev1: BINARY (RFC 3516) is offered to IMAP4rev1
// clients too, and BINARY[1] of a base64 part is its decoded bytes, with
// BINARY.SIZE their count.
func TestBinaryForIMAP4rev1(t *testing.T) {
	k := start(t)
	k.deliver("From: a@x.example\r\nTo: alice@x.example\r\nSubject: att\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b--\r\n")
	r := k.rawLogin()
	if c := capabilities(r, "c"); !strings.Contains(c, " BINARY") {
		t.Errorf("BINARY not offered: %q", c)
	}
	r.send("d SELECT INBOX\r\n")
	r.until("d OK")
	r.send("e FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n")
	untagged, tagged := r.answer("e")
	if !strings.HasPrefix(tagged, "e OK") || len(untagged) != 1 {
		t.Fatalf("FETCH BINARY: %q, %q", untagged, tagged)
	}
	if got := untagged[0]; !strings.Contains(got, "BINARY.SIZE[1] 4") || !strings.Contains(got, "BINARY[1] ~{4}\r\n\x00\x01\x02\xff") {
		t.Errorf("FETCH BINARY answered %q", got)
	}
}
