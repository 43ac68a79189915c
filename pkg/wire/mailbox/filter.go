package mailbox

import (
	"bytes"
	"slices"
)

// DropFields returns raw without the header fields whose names (compared
// without regard to ASCII case) are in drop, lower case: the per-mailbox
// header filter (SPEC §8; some mail clients choke on header fields other
// clients write). Folded continuation lines go with their field. The body
// is never touched, and raw is returned unchanged when nothing is dropped.
func DropFields(raw []byte, drop []string) []byte {
	if len(drop) == 0 {
		return raw
	}
	var out []byte
	kept := 0 // raw[kept:pos] is pending output
	skipping := false
	pos := 0
	for pos < len(raw) {
		end := bytes.IndexByte(raw[pos:], '\n')
		if end < 0 {
			end = len(raw)
		} else {
			end += pos + 1
		}
		line := raw[pos:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // end of the header section
		}
		cont := line[0] == ' ' || line[0] == '\t'
		if !cont {
			skipping = false
			if name, _, ok := bytes.Cut(line, []byte(":")); ok && slices.Contains(drop, string(bytes.ToLower(bytes.TrimRight(name, " \t")))) {
				skipping = true
			}
		}
		if skipping {
			if out == nil {
				out = make([]byte, 0, len(raw))
			}
			out = append(out, raw[kept:pos]...)
			kept = end
		}
		pos = end
	}
	if out == nil {
		return raw
	}
	return append(out, raw[kept:]...)
}
