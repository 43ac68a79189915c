package digest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/twinmx/twinmx/pkg/model"
)

// HeaderName is the header field that marks a digest as spamd's own:
// "v1 " and the base64url HMAC of its Message-ID, recipient, Subject and
// body (see Secret.digestMAC).
const HeaderName = "X-Twinmx-Digest"

// maxOwnSize bounds the mail checked for a digest MAC; Config.Validate
// keeps every digest within it (maxDigestBytes).
const maxOwnSize = 4 << 20

// Worst-case sizes of a digest's parts in the mail as sent, for
// maxDigestBytes. A listed text is at most maxFieldRunes runes of up to 4
// UTF-8 bytes plus "…" (oneLine; a defused "[ALLOW]" costs fewer bytes
// than 4-byte runes would), 803 bytes. Quoted-printable makes each byte
// at most 3 ("=C3"), plus a soft line break ("=\r\n") per 73 of those.
// TestDigestSizeBound builds the worst case and checks these.
const (
	// maxEntryBytes: an entry's number and time (about 50 bytes), four
	// listed texts in their lines (4 × 818) and its ALLOW line (26): 3,348
	// bytes of text, at most 10,500 encoded.
	maxEntryBytes = 11 << 10
	// maxGroupBytes: one line of Digest.Others: "   ALLOW <token>  N x
	// <sender>" with the sender a listed text: 860 bytes of text, at most
	// 2,700 encoded.
	maxGroupBytes = 3 << 10
	// maxFixedBytes: the header and the text around the lists, with
	// mailbox and allow addresses of up to 256 bytes (RFC 5321
	// §4.5.3.1.3), about 2 KiB; the rest is margin.
	maxFixedBytes = 16 << 10
)

// maxDigestBytes bounds the size of a digest of at most entries entries
// and senders groups.
func maxDigestBytes(entries, senders int) int64 {
	if entries > maxOwnSize || senders > maxOwnSize {
		return math.MaxInt64 // far beyond any bound; the products might overflow
	}
	return maxFixedBytes + int64(entries)*maxEntryBytes + int64(senders)*maxGroupBytes
}

// Entry is one refused mail as a digest lists it.
type Entry struct {
	Time     time.Time // the refused attempt's time
	Envelope string    // envelope sender (MAIL FROM); "" for the null sender or unknown
	From     string    // From header field, decoded
	Subject  string    // Subject, decoded
	Reason   string    // why it was refused (the reason row)
	Token    string    // allow token for (mailbox, Envelope); "" when it cannot be allowed
}

// Digest is the content of one digest mail.
type Digest struct {
	Mailbox string    // the recipient: the mailbox's address
	ReplyTo string    // the allow address
	Since   time.Time // the previous digest, or the first listed refusal
	Date    time.Time
	MsgID   string  // Message-ID without angle brackets
	Entries []Entry // listed one by one, at most Config.MaxEntries
	// More counts the refused mails beyond Entries. Each is from a
	// sender with an ALLOW line in Entries (whose token is linked to it
	// too), in a Group of Others, or among the Hidden (see addRest).
	More int
	// Others are the senders of More's mails that have no ALLOW line in
	// Entries, one Group each, at most Config.MaxSenders.
	Others []Group
	// Hidden is how many of More's mails come from the HiddenSenders
	// senders beyond Config.MaxSenders: only counted.
	Hidden, HiddenSenders int
}

// Subject returns the digest's Subject (ASCII, unfolded).
func (d Digest) Subject() string {
	n := len(d.Entries) + d.More
	noun := "mails"
	if n == 1 {
		noun = "mail"
	}
	return fmt.Sprintf("twinmx: %d %s refused since %s", n, noun, d.Since.UTC().Format("2006-01-02 15:04 UTC"))
}

// Build returns the digest as an RFC 5322 mail with CRLF line ends: a
// text/plain UTF-8 body, quoted-printable (7-bit clean for any relay), and
// the HeaderName field made with s.
func Build(s Secret, d Digest) []byte {
	body := encodeBody(d)
	domain := domainOf(d.Mailbox)
	subject := d.Subject()
	var b bytes.Buffer
	field := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	field("Date", d.Date.Format(time.RFC1123Z))
	field("From", (&mail.Address{Name: "twinmx digest", Address: "postmaster@" + domain}).String())
	field("To", (&mail.Address{Address: d.Mailbox}).String())
	field("Reply-To", (&mail.Address{Address: d.ReplyTo}).String())
	field("Subject", subject)
	field("Message-ID", "<"+d.MsgID+">")
	field("Auto-Submitted", "auto-generated") // RFC 3834 §5
	field("MIME-Version", "1.0")
	field("Content-Type", "text/plain; charset=utf-8")
	field("Content-Transfer-Encoding", "quoted-printable")
	field(HeaderName, "v1 "+base64.RawURLEncoding.EncodeToString(s.digestMAC(d.MsgID, d.Mailbox, subject, body)))
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// digestMAC authenticates a digest: its Message-ID, recipient mailbox,
// Subject and body. A digest replayed to another mailbox, or with another
// body or Subject, does not verify.
func (s Secret) digestMAC(msgID, mailbox, subject string, body []byte) []byte {
	h := sha256.Sum256(canonBody(body))
	return s.mac("twinmx-digest/1", msgID, string(model.MailboxContent(mailbox)), subject, string(h[:]))
}

// canonBody removes what transport may change: CRs and trailing blank
// lines.
func canonBody(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r"), nil)
	return bytes.TrimRight(b, "\n")
}

// IsOwn reports whether raw is a digest made with s for mailbox (the
// recipient's mailbox address): its HeaderName MAC verifies.
func (s Secret) IsOwn(mailbox string, raw []byte) bool {
	if len(raw) > maxOwnSize {
		return false
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return false
	}
	v, ok := strings.CutPrefix(msg.Header.Get(HeaderName), "v1 ")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return false
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return false
	}
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(msg.Header.Get("Message-ID")), "<"), ">")
	return hmac.Equal(got, s.digestMAC(id, mailbox, msg.Header.Get("Subject"), body))
}

// encodeBody returns the quoted-printable body with CRLF line ends.
func encodeBody(d Digest) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	io.WriteString(w, bodyText(d)) // writes to a bytes.Buffer do not fail
	w.Close()
	return b.Bytes()
}

const timeLayout = "2006-01-02 15:04:05 UTC"

// bodyText is the digest's text (LF line ends, UTF-8).
func bodyText(d Digest) string {
	var b strings.Builder
	n := len(d.Entries) + d.More
	fmt.Fprintf(&b, "twinmx refused %d mail(s) for %s since %s.\n", n, d.Mailbox, d.Since.UTC().Format(timeLayout))
	b.WriteString("They were not delivered: the sending server was told at once (SMTP 550).\n\n")
	b.WriteString("To let a sender through from now on, reply to this mail and keep the\n")
	fmt.Fprintf(&b, "ALLOW line of that sender; delete the others. The reply goes to %s.\n", d.ReplyTo)
	b.WriteString("Every ALLOW line in your reply counts, quoted or not.\n")
	for i, e := range d.Entries {
		fmt.Fprintf(&b, "\n%d. %s\n", i+1, e.Time.UTC().Format(timeLayout))
		env := "<>"
		if e.Envelope != "" {
			env = "<" + e.Envelope + ">"
		}
		fmt.Fprintf(&b, "   Sender:  %s\n", oneLine(env))
		fmt.Fprintf(&b, "   From:    %s\n", oneLine(e.From))
		fmt.Fprintf(&b, "   Subject: %s\n", oneLine(e.Subject))
		fmt.Fprintf(&b, "   Reason:  %s\n", oneLine(e.Reason))
		if e.Token != "" {
			fmt.Fprintf(&b, "   ALLOW %s\n", e.Token)
		}
	}
	restText(&b, d)
	return b.String()
}

// restText writes what d says about the refused mails beyond its entries
// (More): whose they are, and a line per sender of Others. A line of
// Others starts with its ALLOW token: a mail program that wraps the quoted
// line of a long address does not part the token from its ALLOW.
func restText(b *strings.Builder, d Digest) {
	if d.More == 0 {
		return
	}
	others := 0
	for _, g := range d.Others {
		others += g.Mails
	}
	fmt.Fprintf(b, "\n... and %d more not listed one by one:\n", d.More)
	if n := d.More - others - d.Hidden; n > 0 {
		fmt.Fprintf(b, "- %d from senders listed above: their ALLOW lines count for these too.\n", n)
	}
	if others > 0 {
		fmt.Fprintf(b, "- %d from the %d sender(s) below, a line each with how many they sent.\n", others, len(d.Others))
		b.WriteString("  Keep a sender's line to allow it. The address is shown as it is\n")
		b.WriteString("  allowed: without a per-mail tag (BATV, VERP, SRS, +extension).\n")
	}
	if d.Hidden > 0 {
		fmt.Fprintf(b, "- %d from %d more sender(s) not listed here (the digest's size bound).\n", d.Hidden, d.HiddenSenders)
	}
	if len(d.Others) > 0 {
		b.WriteString("\n")
	}
	for _, g := range d.Others {
		if g.Token == "" {
			fmt.Fprintf(b, "   %-22s  %d x <%s> (null or unknown sender)\n", "(cannot be allowed)", g.Mails, oneLine(g.Sender))
			continue
		}
		fmt.Fprintf(b, "   ALLOW %s  %d x <%s>\n", g.Token, g.Mails, oneLine(g.Sender))
	}
}

// maxFieldRunes bounds a listed header value.
const maxFieldRunes = 200

// oneLine makes text from a refused mail safe to list: valid UTF-8, no
// control, format or line-separator characters (no line breaks, so a
// sender's text never starts a line of the digest, and no bidi overrides
// that would make it display as something else), at most maxFieldRunes
// runes, and no "ALLOW <token>" of its own (a reply quoting it would apply
// it). The defusing comes last: a control character between ALLOW and a
// word, or a cut after 16 letters, must not make a token after the check.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxFieldRunes {
			b.WriteString("…")
			break
		}
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return tokenRE.ReplaceAllStringFunc(b.String(), func(m string) string { return "[" + m[:5] + "]" + m[5:] })
}

// headerDecoder decodes RFC 2047 encoded words in every charset of the
// WHATWG Encoding Standard (windows-1252, ISO-8859-x, KOI8-R, Shift_JIS,
// GB2312, ...). A bare mime.WordDecoder knows only UTF-8, US-ASCII and
// Latin-1 and fails the whole field for any other charset, so the digest
// listed such a Subject or From as its raw encoded words, and the owner
// could not recognise a wanted mail by it. A charset nobody knows passes
// its bytes through: its ASCII stays readable, and oneLine makes the rest
// valid UTF-8.
var headerDecoder = mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return r, nil
	}
	return enc.NewDecoder().Reader(r), nil
}}

// decodeHeader decodes RFC 2047 encoded words; on failure the raw value.
func decodeHeader(v string) string {
	if s, err := headerDecoder.DecodeHeader(v); err == nil {
		return s
	}
	return v
}

// looseFields returns the first From and Subject fields of a header that
// net/mail refuses, skipping the lines that are not fields (no colon, or a
// continuation with no field before it). ok is false when it has neither.
func looseFields(hdr []byte) (from, subject string, ok bool) {
	var cur *string // the value being unfolded: from or subject, or nil
	var seenFrom, seenSubject bool
	for line := range strings.Lines(string(hdr)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break // end of the header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				*cur += " " + strings.TrimSpace(line)
			}
			continue
		}
		cur = nil
		name, value, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		switch strings.ToLower(strings.TrimRight(name, " \t")) {
		case "from":
			if !seenFrom {
				seenFrom, from, cur = true, strings.TrimSpace(value), &from
			}
		case "subject":
			if !seenSubject {
				seenSubject, subject, cur = true, strings.TrimSpace(value), &subject
			}
		}
	}
	return from, subject, seenFrom || seenSubject
}

// domainOf returns the domain of an address ("" without '@').
func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}
