package daemon

import (
	"fmt"
	"strings"
	"testing"
)

// TestSearchSmallerWithOtherKeys: a SMALLER key keeps its bound when
// another size or date key follows it. go-imap's SearchCriteria.And took
// the other side's SMALLER even when it had none (0), so `SMALLER n
// LARGER m`, `SMALLER n SINCE d` and `(LARGER a SMALLER b) LARGER c`
// searched without the SMALLER bound (found by TestDifferentialDovecotRandom,
// TWINMX_SEED=7: Dovecot found nothing where imapd found every mail
// larger than c).
func TestSearchSmallerWithOtherKeys(t *testing.T) {
	k := start(t)
	for i := 1; i <= 3; i++ { // sizes grow with i
		k.deliver(mail(i) + strings.Repeat("x", 1000*i) + "\r\n")
	}
	r, _ := k.loginSelect()
	sizes := make([]int, 4)
	r.send("f FETCH 1:3 RFC822.SIZE\r\n")
	lines, _ := r.answer("f")
	for _, l := range lines {
		var seq, size int
		if _, err := fmt.Sscanf(l, "* %d FETCH (RFC822.SIZE %d)", &seq, &size); err == nil {
			sizes[seq] = size
		}
	}
	for _, tt := range []struct{ keys, want string }{
		{fmt.Sprintf("SMALLER %d LARGER %d", sizes[3], sizes[1]), "* SEARCH 2"},
		{fmt.Sprintf("LARGER %d SMALLER %d", sizes[1], sizes[3]), "* SEARCH 2"},
		{fmt.Sprintf("SMALLER %d SINCE 1-Jan-2000", sizes[2]), "* SEARCH 1"},
		{fmt.Sprintf("SMALLER %d SENTON 28-Nov-2026", sizes[2]), "* SEARCH 1"},
		{fmt.Sprintf("(LARGER %d SMALLER %d) LARGER %d", sizes[2], sizes[1], sizes[1]), "* SEARCH"},
	} {
		r.send("s SEARCH " + tt.keys + "\r\n")
		lines, tagged := r.answer("s")
		if !strings.HasPrefix(tagged, "s OK") || len(lines) != 1 || strings.TrimSpace(lines[0]) != tt.want {
			t.Errorf("SEARCH %s = %q %q, want %q", tt.keys, lines, tagged, tt.want)
		}
	}
}
