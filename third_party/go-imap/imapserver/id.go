package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// handleID answers ID (RFC 2971; twinmx patch) in any state with
// Options.ID. What the client says of itself is read and dropped: at
// most 30 field-value pairs, as the RFC bounds them.
func (c *Conn) handleID(dec *imapwire.Decoder) error {
	id := c.server.options.ID
	if id == nil {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var atom string
	if dec.Atom(&atom) {
		if !dec.Expect(strings.EqualFold(atom, "NIL"), "NIL") {
			return dec.Err()
		}
	} else {
		n := 0
		err := dec.ExpectList(func() error {
			if n++; n > 60 {
				return newClientBugError("ID takes at most 30 fields")
			}
			var s string // a field name, then its value (NIL allowed)
			if !dec.ExpectNString(&s) {
				return dec.Err()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n%2 != 0 {
			return newClientBugError("ID fields come in name-value pairs")
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	fields := []struct{ k, v string }{
		{"name", id.Name}, {"version", id.Version}, {"os", id.OS}, {"os-version", id.OSVersion},
		{"vendor", id.Vendor}, {"support-url", id.SupportURL}, {"address", id.Address}, {"date", id.Date},
		{"command", id.Command}, {"arguments", id.Arguments}, {"environment", id.Environment},
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ID").SP().Special('(')
	first := true
	for _, f := range fields {
		if f.v == "" {
			continue
		}
		if !first {
			enc.SP()
		}
		first = false
		enc.Quoted(f.k).SP().String(f.v)
	}
	enc.Special(')')
	return enc.CRLF()
}
