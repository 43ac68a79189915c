package session

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

// SEARCH matches strings against a mail's text as a reader sees it (RFC
// 9051 §6.4.4, and Dovecot does so): header values with their RFC 2047
// words decoded, and the text parts of the body with their transfer
// encoding and charset undone. Matching the stored bytes instead missed a
// word in a base64 or quoted-printable part or an encoded Subject, and
// found base64 letters, part headers and the text around a multipart's
// parts (mailing-list footers).

// maxSearchText bounds the decoded text of one mail: a charset such as
// UTF-16 can double a part, and a SEARCH holds one mail's text at a time.
const maxSearchText = 32 << 20

// charsetReader returns r converted from the charset named label to
// UTF-8, by the WHATWG names and aliases that mail clients use. It
// registers nothing: importing go-message/charset would make every
// go-message reader convert charsets, BINARY's included, which RFC 3516
// forbids (it did, for a moment: BINARY.SIZE of an ISO-8859-1 part grew
// by its 8-bit bytes).
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	e, err := htmlindex.Get(label)
	if err != nil {
		return nil, err
	}
	return e.NewDecoder().Reader(r), nil
}

// SearchCharset turns the strings of a SEARCH CHARSET label (RFC 9051
// §6.4.4; ISO-8859-1, KOI8-R, Shift_JIS, ...: what Dovecot takes too)
// into UTF-8, by the same WHATWG names as charsetReader. For the go-imap
// server's Options.SearchCharset.
func SearchCharset(label string) (func(string) (string, error), error) {
	e, err := htmlindex.Get(label)
	if err != nil {
		return nil, err
	}
	return func(s string) (string, error) { return e.NewDecoder().String(s) }, nil
}

// decodedValue returns a header field's value unfolded, its encoded words
// decoded; the raw value if they do not decode.
func decodedValue(field []byte) []byte {
	_, v, _ := bytes.Cut(field, []byte(":"))
	v = bytes.TrimSpace(bytes.ReplaceAll(bytes.ReplaceAll(v, []byte("\r\n"), nil), []byte("\n"), nil))
	if !bytes.Contains(v, []byte("=?")) {
		return v
	}
	d, err := (&mime.WordDecoder{CharsetReader: charsetReader}).DecodeHeader(string(v))
	if err != nil {
		return v
	}
	return []byte(d)
}

// searchHeader returns the decoded values of header's fields named key
// (any field for ""), one a line.
func searchHeader(header []byte, key string) [][]byte {
	var out [][]byte
	mimetree.EachField(header, func(name, field []byte) {
		if key == "" || strings.EqualFold(string(name), key) {
			out = append(out, decodedValue(field))
		}
	})
	return out
}

// searchText returns t as SEARCH reads it: headers, every header field
// of the mail and of its parts and enclosed mails as "name: value" lines,
// values decoded (what TEXT reads besides the body); and body, the text
// parts decoded, a newline after each (what BODY reads: no header, no
// preamble or epilogue of a multipart, no part that is not text). Both as
// Dovecot reads them.
func searchText(t *mimetree.Tree) (headers, body []byte) {
	var hb, bb bytes.Buffer
	var walk func(p *mimetree.Part)
	walk = func(p *mimetree.Part) {
		if hb.Len()+bb.Len() >= maxSearchText {
			return
		}
		mimetree.EachField(t.Raw[p.Start:p.BodyStart], func(name, field []byte) {
			hb.Write(name)
			hb.WriteString(": ")
			hb.Write(decodedValue(field))
			hb.WriteByte('\n')
		})
		switch p.Kind {
		case mimetree.Multipart, mimetree.Message:
			for _, c := range p.Parts {
				walk(c)
			}
		default:
			if p.Type != "text" || p.Overflow {
				return
			}
			decodePart(&bb, p, t.Raw[p.BodyStart:p.End])
			bb.WriteByte('\n')
		}
	}
	walk(t.Root)
	h, b := hb.Bytes(), bb.Bytes()
	return h[:min(len(h), maxSearchText)], b[:min(len(b), maxSearchText)]
}

// decodePart writes body, a text part's body, with its transfer encoding
// and charset undone, to out. What does not decode is written as it is:
// a broken part is still searched.
func decodePart(out *bytes.Buffer, p *mimetree.Part, body []byte) {
	var r io.Reader = bytes.NewReader(body)
	switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &base64Clean{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	if cs := strings.ToLower(p.Params["charset"]); cs != "" && cs != "us-ascii" && cs != "utf-8" {
		if cr, err := charsetReader(cs, r); err == nil {
			r = cr
		}
	}
	start := out.Len()
	if _, err := io.Copy(out, io.LimitReader(r, maxSearchText)); err != nil && out.Len() == start {
		out.Write(body)
	}
}

// base64Clean passes only base64 letters on, so that line ends, spaces and
// stray characters in a part do not stop the decoder.
type base64Clean struct{ r io.Reader }

func (b *base64Clean) Read(p []byte) (int, error) {
	for {
		n, err := b.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}
