package config

import (
	"fmt"
	"strings"
)

// Report is the result of every line of a plan, one a line: "ok" with the
// previous value, or the error; then a summary line. dbctl config apply
// prints it and spamd mails it as the confirmation.
func Report(p *Plan) string {
	var b strings.Builder
	n := 0
	for _, r := range p.Results {
		if r.Err != nil {
			n++
			fmt.Fprintf(&b, "line %d: error: %v: %s\n", r.Line.N, r.Err, r.Line.Text)
		} else {
			fmt.Fprintf(&b, "line %d: ok (was: %s): %s\n", r.Line.N, r.Previous, r.Line.Text)
		}
	}
	switch {
	case n > 0:
		fmt.Fprintf(&b, "%d of %d lines failed: nothing applied\n", n, len(p.Results))
	default:
		fmt.Fprintf(&b, "%d changes applied\n", len(p.Results))
	}
	return b.String()
}
