package model

import (
	"bytes"
	"fmt"
	"strings"
)

// Verdict reasons (SPEC §7: every decision is explainable). spamd writes
// the reason for a receive row's verdict as a text row
// ReasonContent(...) and links it from the receive row by the column
// ReasonColumn(textKey), valued with the judged attempt's time in Unix ms;
// the highest value is the latest reason. dbctl mails and the rejection
// digest show it.
const reasonColPrefix = "spam.r."

// ReasonContent is the content of the text row holding the reason for a
// receive row's verdict.
func ReasonContent(receive Key, v Verdict, score float64, reason string) []byte {
	return fmt.Appendf(nil, "twinmx-reason/1\nreceive: %s\nverdict: %s\nscore: %.4f\nreason: %s", receive, v, score, oneLine(reason))
}

// ParseReason returns the reason line of a reason row's content.
func ParseReason(b []byte) (string, bool) {
	if !bytes.HasPrefix(b, []byte("twinmx-reason/1\n")) {
		return "", false
	}
	_, r, ok := bytes.Cut(b, []byte("\nreason: "))
	return string(r), ok
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// ReasonColumn names the receive column linking to reason row k.
func ReasonColumn(k Key) string { return LinkColumn(reasonColPrefix, k) }

// LatestReason returns the reason row key a receive row's state links to
// with the highest value (the latest judged attempt).
func LatestReason(st State) (k Key, ok bool) {
	var best uint64
	for name, v := range st.Cols {
		rk, isLink := ParseLinkColumn(reasonColPrefix, name)
		if isLink && (!ok || v > best || v == best && rk.String() > k.String()) {
			k, ok, best = rk, true, v
		}
	}
	return k, ok
}
