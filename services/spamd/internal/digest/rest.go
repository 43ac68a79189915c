package digest

import (
	"cmp"
	"slices"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/sender"
)

// Group is the refused mails of one sender that a digest does not list
// one by one (Digest.Others).
type Group struct {
	Sender string // normalised envelope sender (sender.Normalize); "" for the null sender or unknown
	Mails  int    // how many refused mails
	Token  string // allow token for (mailbox, Sender); "" when it cannot be allowed
}

// tokenIssue is one allow token a digest records: the sender its pair row
// names and the refused receive rows (oldest first) it links.
type tokenIssue struct {
	token, sender string
	refusals      []model.Key
}

// issues are the allow tokens of one digest, one tokenIssue per token in
// order of first use. One per token: linkGen reads the token's link rows
// before the batch is applied, so a token issued twice in one batch would
// choose its generation twice from the same row and could overfill it.
type issues struct {
	order   []*tokenIssue
	byToken map[string]*tokenIssue
}

// add links the refusal rk to tok, issued for sender (the sender of the
// token's first use counts: a token is the HMAC of one pair).
func (is *issues) add(tok, sender string, rk model.Key) {
	ti := is.byToken[tok]
	if ti == nil {
		if is.byToken == nil {
			is.byToken = map[string]*tokenIssue{}
		}
		ti = &tokenIssue{token: tok, sender: sender}
		is.byToken[tok] = ti
		is.order = append(is.order, ti)
	}
	ti.refusals = append(ti.refusals, rk)
}

// addRest fills in what dg says about rest, the refusals of mailbox beyond
// dg.Entries (oldest first), and adds their allow tokens to is. Such a
// refusal is not listed one by one, but its sender can still be allowed,
// keyed on its normalised address (sender.Normalize, what a reply puts on
// the allow list anyway):
//   - a sender with an ALLOW line in dg.Entries: the refusal is linked to
//     the token of the sender's newest entry, so keeping that line accepts
//     it again too;
//   - any other sender gets one Group line in dg.Others with a token made
//     for the normalised address, linked to its refusals of rest;
//   - at most maxSenders Groups (the digest's size bound, see
//     Config.Validate); the senders beyond are counted in dg.Hidden and
//     dg.HiddenSenders. Groups go fewest refusals first, so a sender of
//     one mail is not hidden behind senders of hundreds, and the null
//     sender (never allowed) last.
func addRest(s Secret, mailbox string, dg *Digest, rest []*refusal, maxSenders int, is *issues) {
	dg.More = len(rest)
	if len(rest) == 0 {
		return
	}
	listed := map[string]string{} // normalised sender → token of its newest entry
	for _, e := range dg.Entries {
		if e.Token != "" {
			listed[sender.Normalize(e.Envelope)] = e.Token
		}
	}
	byKey := map[string]*Group{}
	refusals := map[string][]model.Key{}
	var groups []*Group
	for _, r := range rest {
		key := sender.Normalize(r.envelope)
		if tok, ok := listed[key]; ok {
			is.add(tok, r.envelope, r.receive) // the token is in is already
			continue
		}
		g := byKey[key]
		if g == nil {
			g = &Group{Sender: key}
			if key != "" {
				g.Token = s.Token(mailbox, key)
			}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Mails++
		refusals[key] = append(refusals[key], r.receive)
	}
	slices.SortFunc(groups, func(a, b *Group) int {
		return cmp.Or(cmp.Compare(nullRank(a), nullRank(b)), cmp.Compare(a.Mails, b.Mails), cmp.Compare(a.Sender, b.Sender))
	})
	for i, g := range groups {
		if i >= maxSenders {
			dg.Hidden += g.Mails
			dg.HiddenSenders++
			continue
		}
		dg.Others = append(dg.Others, *g)
		if g.Token == "" {
			continue
		}
		for _, rk := range refusals[g.Sender] {
			is.add(g.Token, g.Sender, rk)
		}
	}
}

// nullRank sorts the group of the null sender, which cannot be allowed,
// after every other.
func nullRank(g *Group) int {
	if g.Sender == "" {
		return 1
	}
	return 0
}
