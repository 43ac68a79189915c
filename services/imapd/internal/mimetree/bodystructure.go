package mimetree

import (
	"bytes"
	"errors"
	"math"
	"mime"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

// BodyStructure returns the mail's BODYSTRUCTURE (RFC 9051 §7.5.2). Every
// multipart has at least one part (an empty one is given a 0-byte
// text/plain part, as Dovecot does: go-imap's writer panics on none),
// every message/rfc822 part an envelope and a body, and no string holds
// NUL (RFC 9051 CHAR8 excludes it from literals).
func (t *Tree) BodyStructure() imap.BodyStructure { return t.bodyStructure(t.Root) }

func (t *Tree) bodyStructure(p *Part) imap.BodyStructure {
	h := p.Header
	if p.Kind == Multipart {
		bs := &imap.BodyStructureMultiPart{Subtype: clean(p.Subtype), Extended: &imap.BodyStructureMultiPartExt{
			Params: cleanParams(p.Params), Disposition: disposition(h), Language: language(h),
			Location: clean(h.Get("Content-Location")),
		}}
		for _, c := range p.Parts {
			bs.Children = append(bs.Children, t.bodyStructure(c))
		}
		if len(bs.Children) == 0 {
			bs.Children = []imap.BodyStructure{emptyText()}
		}
		return bs
	}
	body := t.Raw[p.BodyStart:p.End]
	bs := &imap.BodyStructureSinglePart{
		Type: p.Type, Subtype: p.Subtype, Params: cleanParams(p.Params),
		ID: clean(h.Get("Content-Id")), Description: clean(h.Get("Content-Description")),
		Encoding: clean(h.Get("Content-Transfer-Encoding")),
		Size:     uint32(min(int64(len(body)), math.MaxUint32)),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(h), Language: language(h), Location: clean(h.Get("Content-Location")),
		},
	}
	lines := int64(bytes.Count(body, []byte("\n")))
	switch {
	case p.Overflow:
		bs.Type, bs.Subtype, bs.Params = "application", "octet-stream", nil
	case p.Kind == Message:
		m := p.Parts[0]
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope: Envelope(m.Header), BodyStructure: t.bodyStructure(m), NumLines: lines,
		}
	case p.Type == "text":
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	return bs
}

func emptyText() *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain",
		Params: map[string]string{"charset": "us-ascii"}, Encoding: "7bit",
		Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{}}
}

// Envelope returns the ENVELOPE of a header: the address lists read by
// addressList, the other fields as the header's text (fieldText), NUL
// removed from every string. (go-imap's ExtractEnvelope parses dates and
// msg-ids, which ENVELOPE does not want, and drops an address list for
// one bad address.)
func Envelope(h textproto.Header) *imap.Envelope {
	addrs := func(k string, max int) []imap.Address {
		// Every field of the name, as a reader shows them all: a header
		// with one Cc field per address is common in spam and in old mail.
		// go-message lists the fields of a header built field by field
		// (ParseHeader) last first (TestEnvelopeFieldOrder).
		v := h.Values(k)
		if len(v) == 0 {
			return nil
		}
		slices.Reverse(v)
		l := addressList(strings.Join(v, ","), max)
		for i := range l {
			l[i].Name, l[i].Mailbox, l[i].Host = clean(l[i].Name), clean(l[i].Mailbox), clean(l[i].Host)
		}
		return l
	}
	e := &imap.Envelope{
		// Sender holds one mailbox (RFC 5322 §3.6.2).
		From: addrs("From", 0), Sender: addrs("Sender", 1), ReplyTo: addrs("Reply-To", 0),
		To: addrs("To", 0), Cc: addrs("Cc", 0), Bcc: addrs("Bcc", 0),
		Text: &imap.EnvelopeText{Date: fieldText(h, "Date"), Subject: fieldText(h, "Subject"),
			InReplyTo: fieldText(h, "In-Reply-To"), MessageID: fieldText(h, "Message-Id")},
	}
	if s := e.Text.Subject; s != nil {
		// A subject reads as one line of words, as Dovecot sends it:
		// each run of white space (a fold, a tab) becomes one space.
		t := strings.Join(strings.FieldsFunc(*s, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
		e.Text.Subject = &t
	}
	return e
}

func disposition(h textproto.Header) *imap.BodyStructureDisposition {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return nil
	}
	d, params, err := parseMediaType(v)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) || d == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: clean(d), Params: cleanParams(params)}
}

func language(h textproto.Header) []string {
	var l []string
	for _, s := range strings.Split(h.Get("Content-Language"), ",") {
		if s = clean(strings.TrimSpace(s)); s != "" {
			l = append(l, s)
		}
	}
	return l
}

func clean(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

func cleanParams(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k = clean(k); k != "" {
			out[k] = clean(v)
		}
	}
	return out
}

// fieldText returns the text of the first field named k, as ENVELOPE
// sends Date, Subject, In-Reply-To and Message-ID (RFC 9051 §7.5.2):
// unfolded (line breaks removed, the white space after them kept),
// without the white space after the colon, NUL removed; nil if the
// header has no such field. go-imap's
// own fields would turn an unparsable Date or Message-ID into NIL, keep
// only the msg-ids of In-Reply-To and send an empty Subject as NIL.
func fieldText(h textproto.Header, k string) *string {
	var first []byte
	fields := h.FieldsByKey(k)
	for fields.Next() {
		// go-message lists the fields of a header built field by field
		// last first (TestEnvelopeText): the last seen is the first.
		raw, err := fields.Raw()
		if err == nil {
			first = raw
		}
	}
	if first == nil {
		return nil
	}
	_, v, _ := bytes.Cut(first, []byte(":"))
	v = bytes.ReplaceAll(bytes.ReplaceAll(v, []byte("\r"), nil), []byte("\n"), nil)
	t := clean(string(bytes.TrimLeft(v, " \t")))
	return &t
}
