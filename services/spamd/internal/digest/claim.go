package digest

import (
	"fmt"
	"strings"

	"github.com/twinmx/twinmx/pkg/model"
)

// A mailbox's digest state is a config row, stateContent(mailbox), with
// three columns (all only rise and merge by maximum):
//   - colClaim: period<<32 | nonce, the latest claim to send the mailbox's
//     digest of a period (claimValue);
//   - colDone: the last period whose digest was sent;
//   - colSent: when the last digest was sent, Unix ms ("since" in the next).
const (
	colClaim = "digest.claim"
	colDone  = "digest.done"
	colSent  = "digest.sent"
	// colDigested marks a receive row listed in a digest (Unix ms); spamd's
	// role may set spam.* on receive.
	colDigested = "spam.digested"
	// colList is judge's allow/block list column (judge.ListValue).
	colList = "list"
)

func stateContent(mailbox string) []byte {
	return fmt.Appendf(nil, "twinmx-digest/1\nmailbox: %s", strings.ToLower(mailbox))
}

// claimValue is a claim for period with nonce: the period in the high
// bits, so a later period outranks every earlier claim; among claims of one
// period the highest nonce wins, on every site once they replicate.
func claimValue(period uint64, nonce uint32) uint64 { return period<<32 | uint64(nonce) }

// mayClaim reports whether period's digest is still unclaimed and unsent
// in state st.
func mayClaim(st model.State, period uint64) bool {
	return st.Col(colDone) < period && st.Col(colClaim)>>32 < period
}

// won reports whether the claim mine is still the winning claim in st and
// its period's digest is unsent. Read after the claim wait: every claim
// made at the same time has replicated by then, unless replication lags
// more than the wait (then two instances may both win: a duplicate digest,
// never a lost one).
func won(st model.State, mine uint64) bool {
	return st.Col(colClaim) == mine && st.Col(colDone) < mine>>32
}
