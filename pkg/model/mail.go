package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MaxMsgIDLen bounds a normalised Message-ID. RFC 5322 §2.1.1 limits a line
// to 998 characters, so a longer value cannot come from a well-formed
// single-line field; Split reports such a value as absent rather than make a
// huge msgid row out of hostile input.
const MaxMsgIDLen = 998

// ErrBadReceived is returned by Join and ReceivedFields for a Received
// encoding that Split could not have produced (for Join: not for that header).
var ErrBadReceived = errors.New("model: malformed received encoding")

// Parts is a raw mail split into the pieces that are stored as rows
// (SPEC §3): the header without its Received fields, the Received fields of
// this one delivery, and the body.
//
// Header and Body together are the identity of the mail: they do not depend
// on any Received field (count, content or position). Received records where
// each removed field stood, so Join re-creates the raw mail byte for byte.
type Parts struct {
	// Header is the header section without its Received fields, including
	// the blank separator line ("\n" or "\r\n") if the mail has one.
	Header []byte
	// Received is the encoding of the removed Received fields with their
	// positions (see the package doc, "Received encoding"). It is empty when
	// the mail has no Received field.
	Received []byte
	// Body is everything after the separator line; empty when the mail has
	// none. It shares memory with the raw mail given to Split.
	Body []byte
	// MessageID is the normalised value of the first Message-ID field
	// that has a usable one: unfolded, without the angle brackets and the
	// comments and white space around them; "" if there is none (a field
	// whose value is empty or longer than MaxMsgIDLen does not count).
	MessageID string
}

// ReceivedField is one Received field removed by Split.
type ReceivedField struct {
	// Index is the field's position among all header fields of the raw mail,
	// counting from 0 and counting the Received fields themselves.
	Index int
	// Raw is the field exactly as it appeared, with its folded continuation
	// lines and its line end (absent only if the mail ended inside it).
	Raw []byte
}

// Split splits a raw RFC 5322 mail into its parts. It never fails: any byte
// string is some mail, and Join(Split(raw)) == raw for every raw.
//
// The header section ends at the first empty line ("\n" or "\r\n"); without
// one, the whole input is header and the body is empty. Lines end at LF; a
// bare CR is an ordinary byte. A header field is a line plus the following
// lines that begin with SP or HTAB (RFC 5322 §2.2.3 folding); the first line
// always starts a field, whatever it holds, so an mbox "From " line or a line
// without a colon is a field like any other. A field is a Received field when
// its name is "Received" in any case, followed by optional SP/HTAB and ':'.
//
// Header and Received are newly allocated; Body is a sub-slice of raw (it can
// be tens of megabytes, so it is not copied).
func Split(raw []byte) Parts {
	var p Parts
	var header []byte
	pos, index := 0, 0
	for pos < len(raw) && !isSeparator(raw, pos) {
		end := fieldEnd(raw, pos)
		f := raw[pos:end]
		if isReceived(f) {
			p.Received = appendRecord(p.Received, index, f)
		} else {
			if header == nil {
				// The header section's length bounds the header's: one
				// allocation, never scaled by the body.
				header = make([]byte, 0, headerSectionLen(raw))
			}
			header = append(header, f...)
			if p.MessageID == "" {
				if v, ok := fieldValue(f, "message-id"); ok {
					p.MessageID = normalizeMsgID(v)
				}
			}
		}
		index++
		pos = end
	}
	sepEnd := pos
	if pos < len(raw) {
		sepEnd += separatorLen(raw, pos)
		header = append(header, raw[pos:sepEnd]...)
	}
	if header == nil {
		header = []byte{}
	}
	p.Header = header
	p.Body = raw[sepEnd:len(raw):len(raw)]
	return p
}

// Join re-creates the raw mail from its parts: the header fields of
// p.Header with every Received field of p.Received put back at its original
// position, then p.Body. It returns an error wrapping ErrBadReceived when
// p.Received is malformed or does not fit p.Header (a position beyond the
// header's fields, a field that would merge with its neighbour).
func Join(p Parts) ([]byte, error) {
	return AppendJoin(make([]byte, 0, JoinedSizeMax(p)), p)
}

// JoinedSizeMax is the most bytes Join(p) returns: the parts' lengths
// (the Received encoding holds each field's bytes and a little more).
func JoinedSizeMax(p Parts) int { return len(p.Header) + len(p.Received) + len(p.Body) }

// AppendJoin is Join appending to dst, so that a reader of many mails can
// join each into memory the one before it used. On error dst's bytes
// beyond its length may have been written.
func AppendJoin(dst []byte, p Parts) ([]byte, error) {
	out := dst
	h := p.Header
	pos, index := 0, 0
	rd := recordReader{b: p.Received}
	lastWasOpen := false // the previous piece was a Received field without line end
	for {
		f, ok, err := rd.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if lastWasOpen {
			return nil, fmt.Errorf("%w: a field without line end is not last", ErrBadReceived)
		}
		// Copy the header fields that stood before this one.
		for index < f.Index {
			if pos >= len(h) || isSeparator(h, pos) {
				return nil, fmt.Errorf("%w: field %d is beyond the header's %d fields", ErrBadReceived, f.Index, index)
			}
			end := fieldEnd(h, pos)
			out = append(out, h[pos:end]...)
			pos = end
			index++
		}
		if len(out) > len(dst) && out[len(out)-1] != '\n' {
			return nil, fmt.Errorf("%w: field %d would continue the line before it", ErrBadReceived, f.Index)
		}
		if pos < len(h) && isWSP(h[pos]) {
			// Split never leaves a continuation line after a Received
			// field: it would have been part of that field.
			return nil, fmt.Errorf("%w: field %d is followed by a continuation line", ErrBadReceived, f.Index)
		}
		out = append(out, f.Raw...)
		index++
		lastWasOpen = f.Raw[len(f.Raw)-1] != '\n'
	}
	rest := h[pos:]
	if lastWasOpen && len(rest)+len(p.Body) > 0 {
		return nil, fmt.Errorf("%w: a field without line end is not last", ErrBadReceived)
	}
	out = append(out, rest...)
	out = append(out, p.Body...)
	return out, nil
}

// ReceivedFields decodes a Received encoding made by Split or WithTrace. It
// checks everything that does not depend on the header: canonical varints,
// strictly increasing positions, and that each record is one whole header
// field (of any name: see isHeaderField).
func ReceivedFields(enc []byte) ([]ReceivedField, error) {
	var fs []ReceivedField
	rd := recordReader{b: enc}
	for {
		f, ok, err := rd.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return fs, nil
		}
		fs = append(fs, f)
	}
}

// appendRecord appends one record of the Received encoding:
// uvarint(index) uvarint(len(f)) f.
func appendRecord(b []byte, index int, f []byte) []byte {
	b = binary.AppendUvarint(b, uint64(index))
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

// recordReader reads the Received encoding one record at a time, so Join
// needs no intermediate slice. It never panics on any input.
type recordReader struct {
	b     []byte
	prev  int // index of the previous record, if begun
	begun bool
}

func (r *recordReader) next() (ReceivedField, bool, error) {
	if len(r.b) == 0 {
		return ReceivedField{}, false, nil
	}
	index, err := r.uvarint("position")
	if err != nil {
		return ReceivedField{}, false, err
	}
	n, err := r.uvarint("length")
	if err != nil {
		return ReceivedField{}, false, err
	}
	if n > uint64(len(r.b)) {
		return ReceivedField{}, false, fmt.Errorf("%w: field length %d exceeds the %d bytes left", ErrBadReceived, n, len(r.b))
	}
	// No mail has more fields than an int counts (each takes a byte), and
	// the bound keeps the conversion safe on 32-bit platforms.
	if index > math.MaxInt {
		return ReceivedField{}, false, fmt.Errorf("%w: position %d out of range", ErrBadReceived, index)
	}
	if r.begun && int(index) <= r.prev {
		return ReceivedField{}, false, fmt.Errorf("%w: position %d after %d", ErrBadReceived, index, r.prev)
	}
	raw := r.b[:n:n]
	r.b = r.b[n:]
	if !isHeaderField(raw) || fieldEnd(raw, 0) != len(raw) {
		return ReceivedField{}, false, fmt.Errorf("%w: record %d is not one whole header field", ErrBadReceived, index)
	}
	r.prev, r.begun = int(index), true
	return ReceivedField{Index: int(index), Raw: raw}, true, nil
}

// uvarint reads a minimally encoded uvarint: a longer encoding of the same
// number would give the same mail two received contents, hence two keys.
func (r *recordReader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad %s varint", ErrBadReceived, what)
	}
	if n != uvarintLen(v) {
		return 0, fmt.Errorf("%w: %s varint not minimal", ErrBadReceived, what)
	}
	r.b = r.b[n:]
	return v, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// isSeparator reports whether an empty line ("\n" or "\r\n") starts at pos.
// HeaderSectionLen returns the length of raw's header section with its
// separator line, as Split finds it: up to the first empty line, or all of
// raw without one. Header limits (smtpd's) are checked on it.
func HeaderSectionLen(raw []byte) int { return headerSectionLen(raw) }

// ReceivedCount returns how many Received fields raw's header section
// holds, as Split counts them: the hops a mail has made (RFC 5321 §6.3
// bounds them to detect loops). It reads only the header section.
func ReceivedCount(raw []byte) int {
	n := 0
	for pos := 0; pos < len(raw) && !isSeparator(raw, pos); {
		end := fieldEnd(raw, pos)
		if isReceived(raw[pos:end]) {
			n++
		}
		pos = end
	}
	return n
}

// headerSectionLen returns the length of raw's header section with its
// separator line: up to the first empty line ("\n" or "\r\n" at a line
// start), or all of raw without one.
func headerSectionLen(raw []byte) int {
	if len(raw) > 0 && separatorLen(raw, 0) > 0 {
		return separatorLen(raw, 0)
	}
	end := len(raw)
	for _, sep := range []string{"\n\n", "\n\r\n"} {
		if i := bytes.Index(raw[:end], []byte(sep)); i >= 0 {
			end = i + len(sep)
		}
	}
	return end
}

func isSeparator(b []byte, pos int) bool {
	return separatorLen(b, pos) > 0
}

func separatorLen(b []byte, pos int) int {
	switch {
	case b[pos] == '\n':
		return 1
	case b[pos] == '\r' && pos+1 < len(b) && b[pos+1] == '\n':
		return 2
	}
	return 0
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// fieldEnd returns the end of the field starting at pos: just after the line
// end of its last line, where the last line is the first one not followed by
// a line beginning with SP or HTAB. A separator line never begins with WSP,
// so a field never swallows it.
func fieldEnd(b []byte, pos int) int {
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return len(b)
		}
		pos += i + 1
		if pos >= len(b) || !isWSP(b[pos]) {
			return pos
		}
	}
}

// isReceived reports whether field f is a Received field.
func isReceived(f []byte) bool {
	_, ok := fieldValue(f, "received")
	return ok
}

// isTrace reports whether field f may be a record of the Received
// encoding: a Received field, which Split removes, or a Return-Path field,
// which only WithTrace puts there (smtpd's, at final delivery). Split leaves
// a Return-Path the mail arrived with in the header, as it always did:
// counting it as trace would change the key of every stored mail that
// begins with one (every mail imported from another server), and a retry
// or an import run across the upgrade would store such a mail twice.
func isTrace(f []byte) bool { return isReceived(f) || IsReturnPath(f) }

// isHeaderField reports whether f begins with a field name (printable
// US-ASCII but the colon, RFC 5322 §3.6.8), optional SP/HTAB and a colon.
// A reader accepts any such field as a record of the Received encoding,
// not only the kinds this version writes: then a later version can record
// one more trace field of a delivery (Return-Path was the first, in
// 2026-12) without this version taking the received row for malformed.
func isHeaderField(f []byte) bool {
	i := 0
	for i < len(f) && f[i] > ' ' && f[i] < 0x7f && f[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(f) && isWSP(f[i]) {
		i++
	}
	return i < len(f) && f[i] == ':'
}

// IsReturnPath reports whether field f (a whole field or its first line)
// is a Return-Path field.
func IsReturnPath(f []byte) bool {
	_, ok := fieldValue(f, "return-path")
	return ok
}

// CutReturnPath returns raw without its first header field if that field is
// a Return-Path, and whether it was. An importer uses it to recognise a mail
// twinmx exported: the Return-Path smtpd added at delivery is then the
// first field, and the mail without it has the key the mail was stored
// under.
func CutReturnPath(raw []byte) ([]byte, bool) {
	if len(raw) == 0 || isSeparator(raw, 0) {
		return raw, false
	}
	end := fieldEnd(raw, 0)
	if !IsReturnPath(raw[:end]) || raw[end-1] != '\n' {
		return raw, false
	}
	return raw[end:], true
}

// fieldValue reports whether field f is named name (lower-case ASCII,
// compared case-insensitively; optional SP/HTAB before the colon as in the
// obsolete syntax of RFC 5322 §4.5) and returns the bytes after the colon.
func fieldValue(f []byte, name string) ([]byte, bool) {
	if len(f) <= len(name) {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		c := f[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return nil, false
		}
	}
	i := len(name)
	for i < len(f) && isWSP(f[i]) {
		i++
	}
	if i == len(f) || f[i] != ':' {
		return nil, false
	}
	return f[i+1:], true
}

// normalizeMsgID returns the msg-id in a Message-ID field value: unfolded,
// the part between the first '<' after any leading comments and the next
// '>' when there is one (which drops CFWS around it), otherwise the whole
// trimmed value. It returns "" for an empty or over-long result.
func normalizeMsgID(v []byte) string {
	// Unfolding (RFC 5322 §2.2.3) removes the line ends; stray CR or LF
	// bytes cannot belong to an id either.
	if bytes.ContainsAny(v, "\r\n") {
		// Byte-wise, not bytes.Map: that would turn 8-bit bytes into U+FFFD.
		u := make([]byte, 0, len(v))
		for _, c := range v {
			if c != '\r' && c != '\n' {
				u = append(u, c)
			}
		}
		v = u
	}
	v = trimWSP(v)
	// RFC 5322 §3.6.4: msg-id = [CFWS] "<" ... A comment before the '<'
	// may hold a '<' of its own ("(was <old@x>) <new@x>"), which is not
	// the id's.
	w := skipComments(v)
	if i := bytes.IndexByte(w, '<'); i >= 0 {
		if j := bytes.IndexByte(w[i+1:], '>'); j >= 0 {
			v = trimWSP(w[i+1 : i+1+j])
		}
	}
	if len(v) == 0 || len(v) > MaxMsgIDLen {
		return ""
	}
	return string(v)
}

// skipComments returns v after the comments (RFC 5322 §3.2.2: nested, with
// quoted-pairs) and white space it begins with, or v itself if one of them
// is not closed.
func skipComments(v []byte) []byte {
	rest := v
	for len(rest) > 0 && rest[0] == '(' {
		depth, i := 0, 0
		for ; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if depth != 0 {
			return v
		}
		rest = trimWSP(rest[i+1:])
	}
	return rest
}

func trimWSP(b []byte) []byte {
	return bytes.Trim(b, " \t")
}

// ErrBadContent is returned when a row's content does not have the layout
// its table requires (for example a mail row that is not 64 bytes).
var ErrBadContent = errors.New("model: malformed row content")

// PairContentSize is the size of a mail or receive row's content: two keys.
const PairContentSize = 2 * KeySize

// MailContent returns the content of a mail row: the header row's key, then
// the body row's key (64 bytes). Referencing by key, not by row number,
// gives the same mail the same mail key on every site.
func MailContent(header, body Key) []byte {
	return appendPair(header, body)
}

// ParseMailContent splits a mail row's content into the header and body
// keys. It returns an error wrapping ErrBadContent unless b is 64 bytes.
func ParseMailContent(b []byte) (header, body Key, err error) {
	return parsePair(b, Mail)
}

// ReceiveContent returns the content of a receive row: the mail row's key,
// then the mailbox row's key (64 bytes).
func ReceiveContent(mail, mailbox Key) []byte {
	return appendPair(mail, mailbox)
}

// ParseReceiveContent splits a receive row's content into the mail and
// mailbox keys. It returns an error wrapping ErrBadContent unless b is 64
// bytes.
func ParseReceiveContent(b []byte) (mail, mailbox Key, err error) {
	return parsePair(b, Receive)
}

// ParentOf returns the key a row's content names as its parent, for the
// tables dbd indexes by parent so a service can list one parent's rows
// without scanning the table: a receive row's parent is its mailbox (what
// pop3d and imapd list) or, for APPENDed mail, its folder (FolderKey); an
// IMAP placement text row's parent is PlacementParent; a spam feedback
// text row's parent is FeedbackParent (see imap.go). ok is false for every
// other table and content.
func ParentOf(t Table, content []byte) (parent Key, ok bool) {
	if t == Text {
		return textParent(content)
	}
	if t != Receive || len(content) != PairContentSize {
		return parent, false
	}
	copy(parent[:], content[KeySize:])
	return parent, true
}

// Indexed reports whether dbd keeps a parent index for table t (some of
// its rows have a ParentOf): receive and text.
func Indexed(t Table) bool { return t == Receive || t == Text }

func appendPair(a, b Key) []byte {
	out := make([]byte, 0, PairContentSize)
	out = append(out, a[:]...)
	return append(out, b[:]...)
}

func parsePair(b []byte, t Table) (Key, Key, error) {
	var x, y Key
	if len(b) != PairContentSize {
		return x, y, fmt.Errorf("%w: %s content is %d bytes, want %d", ErrBadContent, t, len(b), PairContentSize)
	}
	copy(x[:], b[:KeySize])
	copy(y[:], b[KeySize:])
	return x, y, nil
}

// MailboxContent returns the content of the mailbox row for an address, so
// that every spelling of one mailbox gets one key. It trims surrounding
// white space and one pair of angle brackets (as in "RCPT TO:<a@b>"),
// lower-cases the domain (after the last '@') and keeps the local part as it
// is: RFC 5321 §2.4 says local parts MUST be treated as case sensitive (a
// server may deliver "Jo" and "jo" to different people), while domains follow
// DNS and are not. The one exception is "postmaster", which RFC 5321 §4.5.1
// requires to be case-insensitive; it is lower-cased.
//
// Only ASCII letters are folded. Unicode case mapping changes between Unicode
// versions, and a key must never change; callers give internationalised
// domains as A-labels ("xn--...").
func MailboxContent(address string) []byte {
	a := trimWSP([]byte(address))
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = trimWSP(a[1 : len(a)-1])
	}
	out := make([]byte, len(a))
	copy(out, a)
	at := bytes.LastIndexByte(out, '@')
	local := out
	if at >= 0 {
		local = out[:at]
		lowerASCII(out[at+1:])
	}
	if IsPostmaster(local) {
		lowerASCII(local)
	}
	return out
}

// IsPostmaster reports whether local is "postmaster" with only ASCII
// letters folded (RFC 5321 §4.5.1). bytes.EqualFold also folds Unicode
// ("ſ" U+017F to "s", "K" U+212A to "k"): "poſtmaster" is another address.
func IsPostmaster(local []byte) bool {
	const pm = "postmaster"
	if len(local) != len(pm) {
		return false
	}
	for i, c := range local {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != pm[i] {
			return false
		}
	}
	return true
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// MsgIDContent returns the content of the msgid row for a Message-ID, given
// with or without angle brackets; it is normalised like Parts.MessageID, so
// MsgIDContent(Split(raw).MessageID) and MsgIDContent("<" + id + ">") agree.
// It returns nil when id holds no usable Message-ID.
func MsgIDContent(id string) []byte {
	n := normalizeMsgID([]byte(id))
	if n == "" {
		return nil
	}
	return []byte(n)
}

// MailRows holds the rows that one received mail adds (SPEC §4: a received
// mail is one batch), computed from the raw mail by NewMailRows.
type MailRows struct {
	Parts Parts // the split mail; Body shares memory with the raw mail

	HeaderKey Key    // key of the header row (content Parts.Header)
	BodyKey   Key    // key of the body row (content Parts.Body)
	Mail      []byte // content of the mail row: MailContent(HeaderKey, BodyKey)
	MailKey   Key    // key of the mail row: the mail's identity
	// Received is the content of this delivery's received row
	// (Parts.Received); empty when the mail has no Received field.
	Received    []byte
	ReceivedKey Key
	// MsgID is the content of the msgid row; nil when the mail has no
	// usable Message-ID (then there is no msgid row).
	MsgID    []byte
	MsgIDKey Key // zero when MsgID is nil
}

// NewMailRows splits raw and computes the contents and keys of its header,
// body, mail, received and msgid rows. Two deliveries of the same mail that
// differ only in their Received fields get the same HeaderKey, BodyKey and
// MailKey.
func NewMailRows(raw []byte) MailRows {
	p := Split(raw)
	r := MailRows{
		Parts:     p,
		HeaderKey: KeyOf(Header, p.Header),
		BodyKey:   KeyOf(Body, p.Body),
		Received:  p.Received,
	}
	r.Mail = MailContent(r.HeaderKey, r.BodyKey)
	r.MailKey = KeyOf(Mail, r.Mail)
	r.ReceivedKey = KeyOf(Received, r.Received)
	if id := MsgIDContent(p.MessageID); id != nil {
		r.MsgID = id
		r.MsgIDKey = KeyOf(MsgID, id)
	}
	return r
}

// WithTrace returns p with fields added as the first header fields of the
// mail, in the order given, among its Received fields: what smtpd does when
// it prepends its own "Received:" trace field and, at final delivery,
// "Return-Path:" above it (RFC 5321 §4.4). The header, body and so the mail
// key do not change; Join of the result is the fields followed by the raw
// mail p came from. Each field must be one whole Received or Return-Path
// field ending in a line end, and the mail must not begin with a
// continuation line (it would continue the last field added, and the
// result would not join); otherwise WithTrace returns an error wrapping
// ErrBadReceived.
func (p Parts) WithTrace(fields ...[]byte) (Parts, error) {
	size := len(p.Received)
	for _, f := range fields {
		if len(f) == 0 || !isTrace(f) || fieldEnd(f, 0) != len(f) || f[len(f)-1] != '\n' {
			return p, fmt.Errorf("%w: trace field is not one whole Received or Return-Path field with a line end", ErrBadReceived)
		}
		size += len(f) + 8
	}
	if len(p.Header) > 0 && isWSP(p.Header[0]) {
		return p, fmt.Errorf("%w: the mail begins with a continuation line, which would continue the trace field", ErrBadReceived)
	}
	fs, err := ReceivedFields(p.Received)
	if err != nil {
		return p, err
	}
	enc := make([]byte, 0, size)
	for i, f := range fields {
		enc = appendRecord(enc, i, f)
	}
	for _, f := range fs {
		enc = appendRecord(enc, f.Index+len(fields), f.Raw)
	}
	p.Received = enc
	return p, nil
}

// CRLF returns raw with every LF that no CR precedes turned into CRLF,
// the only line end of mail on the wire (RFC 5322 §2.1, RFC 5321
// §2.3.8); a CR without LF is content and stays. raw itself comes back
// when it has no such LF, so the common case copies nothing.
func CRLF(raw []byte) []byte {
	bare := bytes.Count(raw, []byte("\n")) - bytes.Count(raw, []byte("\r\n"))
	if bare == 0 {
		return raw
	}
	out := make([]byte, 0, len(raw)+bare)
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return append(out, raw...)
		}
		out = append(out, raw[:i]...)
		if i == 0 || raw[i-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		raw = raw[i+1:]
	}
	return out
}
