package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// twinmx patch: THREAD (RFC 5256). Upstream beta.8 has the client side
// only.

// Thread is one message of a THREAD answer and its replies. Num 0 is a
// placeholder for a message not in the answer (a thread whose first
// message is missing), which has two or more children.
type Thread struct {
	Num      uint32
	Children []Thread
}

// SessionThread is an IMAP session which supports THREAD. The server
// advertises THREAD=A for each algorithm A the session names.
type SessionThread interface {
	Session

	// ThreadAlgorithms returns the algorithms the session supports.
	ThreadAlgorithms() []imap.ThreadAlgorithm
	// Thread returns the threads of the messages matching search, their
	// numbers sequence numbers or UIDs as kind says.
	Thread(kind NumKind, algorithm imap.ThreadAlgorithm, search *imap.SearchCriteria) ([]Thread, error)
}

// handleThread reads `THREAD algorithm charset search-key...`.
func (c *Conn) handleThread(dec *imapwire.Decoder, numKind NumKind) error {
	var algorithm, charset string
	if !dec.ExpectSP() || !dec.ExpectAtom(&algorithm) || !dec.ExpectSP() || !dec.ExpectAString(&charset) || !dec.ExpectSP() {
		return dec.Err()
	}
	toUTF8, badCharset := c.searchCharset(charset)
	var search imap.SearchCriteria
	for {
		if err := readSearchKey(&search, dec); err != nil {
			return err
		}
		if !dec.SP() {
			break
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := convertCriteria(&search, toUTF8, badCharset); err != nil {
		return err
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	session, ok := c.session.(SessionThread)
	if !ok {
		return newClientBugError("THREAD is not supported")
	}
	alg := imap.ThreadAlgorithm(strings.ToUpper(algorithm))
	known := false
	for _, a := range session.ThreadAlgorithms() {
		known = known || a == alg
	}
	if !known {
		return newClientBugError("unknown threading algorithm " + algorithm)
	}
	threads, err := session.Thread(numKind, alg, &search)
	if err != nil {
		return err
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("THREAD")
	if len(threads) > 0 {
		enc.SP()
	}
	for _, t := range threads {
		writeThread(enc.Encoder, t)
	}
	return enc.CRLF()
}

// writeThread writes one thread-list (RFC 5256 §5): a chain of single
// replies as numbers in a row, a message with several replies followed by
// one list each.
func writeThread(enc *imapwire.Encoder, t Thread) {
	enc.Special('(')
	for {
		if t.Num != 0 {
			enc.Number(t.Num)
		}
		if len(t.Children) != 1 || t.Num == 0 {
			break
		}
		enc.SP()
		t = t.Children[0]
	}
	if len(t.Children) > 0 && t.Num != 0 {
		enc.SP()
	}
	for _, c := range t.Children {
		writeThread(enc, c)
	}
	enc.Special(')')
}
