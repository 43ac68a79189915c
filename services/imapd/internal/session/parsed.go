package session

import (
	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/mailcache"
	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

// viewKey is the cache key of m's bytes as this session's view has them:
// the received row its state links (zero: none). The bytes dbd joins may
// come from a newer state; they are then cached under the key of the
// rows they came from (mailcache.KeyOf of the origin), and a lookup by
// the view's key does not find them.
func (s *Session) viewKey(m mailbox.Message) mailcache.Key {
	rk, _ := model.MailReceived(m.State)
	return mailcache.KeyOf(mailbox.Origin{Mail: m.Mail, Received: rk}, s.drop(m))
}

// derive says which of a cache entry's optional fields to derive.
type derive struct{ envelope, structure bool }

// derives is what a FETCH of o needs derived.
func derives(o *imap.FetchOptions) derive {
	return derive{envelope: o.Envelope, structure: o.BodyStructure != nil}
}

// lacks reports whether p lacks a field d asks for.
func (d derive) lacks(p *mailcache.Parsed) bool {
	return p == nil || (d.envelope && p.Envelope == nil) || (d.structure && p.Structure == nil)
}

// parse derives a mail's cache entry from its bytes: its size and header
// (copies: raw's memory is recycled for the next mail), and the envelope
// and body structure d asks for.
func parse(raw []byte, d derive) *mailcache.Parsed {
	header := raw[:headerEnd(raw)]
	p := &mailcache.Parsed{Size: int64(len(raw)), Header: append(make([]byte, 0, len(header)), header...)}
	switch {
	case d.structure:
		t := mimetree.Parse(raw, mimetree.Limits{})
		p.Structure = t.BodyStructure()
		if d.envelope {
			// The root part's header is the mail's, read as ParseHeader
			// reads it: parsed once, not twice.
			p.Envelope = mimetree.Envelope(t.Root.Header)
		}
	case d.envelope:
		p.Envelope = mimetree.Envelope(mimetree.ParseHeader(header))
	}
	return p
}

// parseHead is parse of a mail's head (mailbox.Head): its header is what
// the mail's bytes hold before the body, so the header section cut from
// it is the one cut from the whole mail, and its size is the whole
// mail's. The structure needs the body: d must not ask for it.
func parseHead(h mailbox.Head, d derive) *mailcache.Parsed {
	header := h.Header[:headerEnd(h.Header)]
	p := &mailcache.Parsed{Size: h.Size, Header: append(make([]byte, 0, len(header)), header...)}
	if d.envelope {
		p.Envelope = mimetree.Envelope(mimetree.ParseHeader(p.Header))
	}
	return p
}

// usesParsed reports whether a FETCH asks for something a cache entry
// holds (ENVELOPE, BODYSTRUCTURE, a header section): then a mail read for
// it is parsed once and cached.
func usesParsed(o *imap.FetchOptions) bool {
	if o.Envelope || o.BodyStructure != nil {
		return true
	}
	for _, sec := range o.BodySection {
		if headerOnly(sec) {
			return true
		}
	}
	return false
}

// answers reports whether p answers every item of a FETCH of o that
// reads the mail: no section but header ones, no BINARY, and the body
// structure if asked (the envelope, if missing, is derived from p's
// header).
func answers(p *mailcache.Parsed, o *imap.FetchOptions) bool {
	if p == nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 ||
		(o.BodyStructure != nil && p.Structure == nil) {
		return false
	}
	for _, sec := range o.BodySection {
		if !headerOnly(sec) {
			return false
		}
	}
	return true
}

// headerOnly reports whether a BODY[...] section is cut from the mail's
// header section alone (see parts.bodySection): HEADER, HEADER.FIELDS
// and HEADER.FIELDS.NOT of the mail itself, not of a part.
func headerOnly(sec *imap.FetchItemBodySection) bool {
	if len(sec.Part) > 0 {
		return false
	}
	fields := len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0
	return fields || sec.Specifier == imap.PartSpecifierHeader
}
