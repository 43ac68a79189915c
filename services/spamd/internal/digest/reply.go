package digest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
	"github.com/twinmx/twinmx/services/spamd/internal/sender"
)

// Bounds on reading a reply.
const (
	maxTokens    = 100     // distinct ALLOW tokens applied from one reply
	maxReplyText = 1 << 20 // decoded text kept from a reply's MIME parts
	maxMIMEDepth = 4
	maxMIMEParts = 32
)

// tokenRE finds "ALLOW <token>" anywhere in a line, so quoted lines
// ("> ALLOW ...") count too. \b after the token: a longer word is no token.
var tokenRE = regexp.MustCompile(`(?i)\bALLOW[ \t]+([a-z2-7]{16})\b`)

// FindTokens returns the distinct allow tokens in a reply (lower case, in
// order of appearance, at most maxTokens): in the raw mail and in its text
// parts decoded from base64 or quoted-printable.
func FindTokens(raw []byte) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range tokenRE.FindAllSubmatch(replyText(raw), -1) {
		t := strings.ToLower(string(m[1]))
		if !seen[t] && len(out) < maxTokens {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// replyText is raw followed by the decoded text of its encoded text parts.
func replyText(raw []byte) []byte {
	out := bytes.Clone(raw)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return out
	}
	budget := maxReplyText
	decodeParts(textproto.MIMEHeader(msg.Header), msg.Body, 0, &out, &budget)
	return out
}

// decodeParts appends the decoded text of the part with header h and body
// to out, walking multiparts (bounded in depth, parts and bytes).
func decodeParts(h textproto.MIMEHeader, body io.Reader, depth int, out *[]byte, budget *int) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && depth < maxMIMEDepth && params["boundary"] != "":
		mr := multipart.NewReader(body, params["boundary"])
		for range maxMIMEParts {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			decodeParts(p.Header, p, depth+1, out, budget)
		}
	case strings.HasPrefix(mt, "text/") && *budget > 0:
		var r io.Reader
		switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, body) // ignores line breaks
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		default:
			return // readable in raw already
		}
		b, _ := io.ReadAll(io.LimitReader(bufio.NewReader(r), int64(*budget))) // a broken encoding yields what decoded
		*budget -= len(b)
		*out = append(append(*out, '\n'), b...)
	}
}

// Token and pair rows (text table). A token row's content is made from the
// token alone, so a reply's token finds it by key; its columns link
// (model.LinkColumn) to the pair rows the token was issued for, valued
// with the issue time in Unix ms. The pair row names the mailbox and the
// sender. A token is honoured only if it is the HMAC of the pair it links
// to (Secret.Token), so a forged or planted row allows nothing.
//
// The refused receive rows a token was listed for are linked ("rcv.") from
// link rows of generations: generation 0 is the token row itself, g >= 1
// the row linksContent(tok, g); the token row's colLinkGen names the
// current one. A row holds at most model.MaxColumns columns and columns
// are never removed, so a sender refused again and again cannot be linked
// from one row forever. When the current row has no room for a digest's
// refusals they start the next generation, and a reply re-accepts the
// refusals of the current and the previous generation: together these
// hold at least the newest maxRefusalLinks refusals listed (the previous
// row and the first refusals of the current did not fit in one row), which
// is what the user allows when replying to the latest digest. Older ones
// stay refused; the sender is on the allow list and may send them again.
const (
	pairPrefix    = "pair."
	refusalPrefix = "rcv."
	colLinkGen    = "links.gen"
	// maxRefusalLinks bounds the receive links one digest adds to a link
	// row (its newest refusals of the sender) and how full a row gets
	// before the next generation starts. Two sites issuing at once may
	// each fill a row up to it: still well below model.MaxColumns.
	maxRefusalLinks = 64
)

func tokenContent(tok string) []byte { return []byte("twinmx-allow-token/1\ntoken: " + tok) }

// linksContent is the link row of generation gen >= 1 of tok's refusals.
func linksContent(tok string, gen uint64) []byte {
	return fmt.Appendf(tokenContent(tok), "\nrefusals: %d", gen)
}

// pairContent names mailbox (its mailbox row's content) and sender
// (lower-cased: list matching ignores case).
func pairContent(mailbox, sender string) []byte {
	return fmt.Appendf(nil, "twinmx-allow-pair/1\nmailbox: %s\nsender: %s", mailbox, strings.ToLower(sender))
}

func parsePairContent(b []byte) (mailbox, sender string, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte("twinmx-allow-pair/1\nmailbox: "))
	if !found {
		return "", "", false
	}
	m, s, found := bytes.Cut(rest, []byte("\nsender: "))
	if !found || len(m) == 0 || len(s) == 0 {
		return "", "", false
	}
	return string(m), string(s), true
}

// issueRequests are the batch requests that record tok as issued at t for
// (mailbox, sender) and for the refused receive rows (oldest first), linked
// from the link row of generation gen (linkGen chooses it). At most
// maxRefusalLinks refusals are linked: the newest.
func issueRequests(tok, mailbox, sender string, refusals []model.Key, gen uint64, t time.Time) []wire.Request {
	tc, pc := tokenContent(tok), pairContent(mailbox, sender)
	ms := uint64(t.UnixMilli())
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: pc},
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: tc},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: tc}, Name: model.LinkColumn(pairPrefix, model.KeyOf(model.Text, pc)), Value: ms},
	}
	lc := tc
	if gen > 0 {
		lc = linksContent(tok, gen)
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: lc},
			wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: tc}, Name: colLinkGen, Value: gen})
	}
	for _, rk := range refusals[max(len(refusals)-maxRefusalLinks, 0):] {
		reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: lc}, Name: model.LinkColumn(refusalPrefix, rk), Value: ms})
	}
	return reqs
}

// refusalLinks returns how many receive rows link row st links to.
func refusalLinks(st model.State) int {
	n := 0
	for name := range st.Cols {
		if _, ok := model.ParseLinkColumn(refusalPrefix, name); ok {
			n++
		}
	}
	return n
}

// linkGen returns the generation whose link row is to link n more
// refusals of tok: the current one if it has room, else the next.
func linkGen(ctx context.Context, db DB, tok string, n int) (uint64, error) {
	row, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, tokenContent(tok)))
	if errors.Is(err, client.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read token row: %w", err)
	}
	gen := row.State.Col(colLinkGen)
	st := row.State
	if gen > 0 {
		lrow, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, linksContent(tok, gen)))
		switch {
		case errors.Is(err, client.ErrNotFound):
			st = model.State{} // the other site's row, not replicated yet
		case err != nil:
			return 0, fmt.Errorf("read token link row: %w", err)
		default:
			st = lrow.State
		}
	}
	if refusalLinks(st)+min(n, maxRefusalLinks) > maxRefusalLinks && gen < math.MaxUint64 {
		gen++
	}
	return gen, nil
}

// pair is a mailbox and a sender an allow token names.
type pair struct{ mailbox, sender string }

// tokenPairs returns the pairs tok was issued for, within maxAge before t,
// whose HMAC it is, and the receive rows it was listed for
// (tokenRefusals).
func tokenPairs(ctx context.Context, db DB, s Secret, tok string, t time.Time, maxAge time.Duration) ([]pair, []model.Key, error) {
	row, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, tokenContent(tok)))
	if errors.Is(err, client.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read token row: %w", err)
	}
	var pairs []pair
	for name, v := range row.State.Cols {
		pk, ok := model.ParseLinkColumn(pairPrefix, name)
		if !ok || t.Sub(time.UnixMilli(int64(v))) > maxAge {
			continue
		}
		prow, err := db.FindKey(ctx, model.Text, pk)
		if errors.Is(err, client.ErrNotFound) {
			continue // not replicated yet
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read token pair: %w", err)
		}
		if m, snd, ok := parsePairContent(prow.Content); ok && s.validToken(tok, m, snd) {
			pairs = append(pairs, pair{m, snd})
		}
	}
	if len(pairs) == 0 {
		return nil, nil, nil
	}
	refusals, err := tokenRefusals(ctx, db, tok, row.State)
	if err != nil {
		return nil, nil, err
	}
	return pairs, refusals, nil
}

// tokenRefusals returns the receive rows linked from the current and the
// previous link row of tok (token row state st), newest listing first, at
// most 2*maxRefusalLinks: they hold the newest refusals listed (see the
// link rows above).
func tokenRefusals(ctx context.Context, db DB, tok string, st model.State) ([]model.Key, error) {
	type link struct {
		rk model.Key
		ms uint64
	}
	var links []link
	collect := func(st model.State) {
		for name, v := range st.Cols {
			if rk, ok := model.ParseLinkColumn(refusalPrefix, name); ok {
				links = append(links, link{rk, v})
			}
		}
	}
	gen := st.Col(colLinkGen)
	gens := []uint64{gen} // a fixed list: a planted gen of 2^64-1 must not wrap a loop
	if gen > 0 {
		gens = append(gens, gen-1)
	}
	for _, g := range gens {
		if g == 0 {
			collect(st)
			continue
		}
		row, err := db.FindKey(ctx, model.Text, model.KeyOf(model.Text, linksContent(tok, g)))
		if errors.Is(err, client.ErrNotFound) {
			continue // not replicated yet
		}
		if err != nil {
			return nil, fmt.Errorf("read token link row: %w", err)
		}
		collect(row.State)
	}
	slices.SortFunc(links, func(a, b link) int { return cmp.Compare(b.ms, a.ms) })
	out := make([]model.Key, 0, min(len(links), 2*maxRefusalLinks))
	for _, l := range links[:min(len(links), 2*maxRefusalLinks)] {
		out = append(out, l.rk)
	}
	return out, nil
}

// reacceptRequests accept again, at epoch, the refused receive rows of
// mailboxes: rows the filter refused before epoch, so the sender's next
// attempt of the same mail gets 250 (smtpd answers from the receive row's
// verdict). An operator's verdict outranks it (a higher source), and a row
// of another mailbox is left alone.
func reacceptRequests(ctx context.Context, db DB, refusals []model.Key, mailboxes map[model.Key]bool, epoch uint32) ([]wire.Request, error) {
	var reqs []wire.Request
	for _, rk := range refusals {
		row, err := db.FindKey(ctx, model.Receive, rk)
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read refused receive row: %w", err)
		}
		_, mbox, err := model.ParseReceiveContent(row.Content)
		if err != nil || !mailboxes[mbox] {
			continue
		}
		src, e, v, ok := model.DecodeVerdict(row.State.Col(model.ColVerdict))
		if !ok || src != model.SourceFilter || v != model.Reject || e >= epoch {
			continue
		}
		reason := model.ReasonContent(rk, model.Accept, 0, "allow-by-reply: the mailbox owner allowed this sender")
		ref := wire.Ref{ByKey: true, Key: rk}
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: reason},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReasonColumn(model.KeyOf(model.Text, reason)), Value: uint64(epoch) * 1000},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColVerdict, Value: model.EncodeVerdict(model.SourceFilter, epoch, model.Accept)})
	}
	return reqs, nil
}

// Reply applies the allow tokens of raw, a mail to the allow address
// judged at time t: each valid token puts its sender on its mailbox's
// allow list (judge.ListValue(t, judge.ListAllow): the attempt's time, so
// two instances write the same value) and accepts again the refusals it
// was listed for (reacceptRequests). It returns the number of senders
// allowed; 0 when the reply holds no valid token.
func (d *Digester) Reply(ctx context.Context, raw []byte, t time.Time) (int, error) {
	toks := FindTokens(raw)
	if len(toks) == 0 {
		return 0, nil
	}
	s, err := readSecret(ctx, d.cfg.DB)
	if errors.Is(err, errNoSecret) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var reqs []wire.Request
	seen := map[pair]bool{}
	for _, tok := range toks {
		pairs, refusals, err := tokenPairs(ctx, d.cfg.DB, s, tok, t, d.cfg.TokenMaxAge)
		if err != nil {
			return 0, err
		}
		mailboxes := map[model.Key]bool{}
		for _, p := range pairs {
			mailboxes[model.KeyOf(model.Mailbox, []byte(p.mailbox))] = true
		}
		re, err := reacceptRequests(ctx, d.cfg.DB, refusals, mailboxes, model.Epoch(t))
		if err != nil {
			return 0, err
		}
		reqs = append(reqs, re...)
		for _, p := range pairs {
			if seen[p] {
				continue
			}
			seen[p] = true
			// The entry is the normalised sender: a tagged address (BATV,
			// VERP, SRS, a sub-address) would match only the one mail it
			// was refused for, and lists match the normalised form too
			// (judge, "Sender keys" in docs/spamd.md).
			lc := judge.ListContent(p.mailbox, sender.Normalize(p.sender))
			reqs = append(reqs,
				wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: lc},
				wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: lc}, Name: colList, Value: judge.ListValue(t, judge.ListAllow)})
			d.log.Info("sender allowed by digest reply", "mailbox", p.mailbox, "sender", p.sender)
		}
	}
	if len(reqs) == 0 {
		return 0, nil
	}
	if err := d.batch(ctx, reqs); err != nil {
		return 0, fmt.Errorf("set allow list: %w", err)
	}
	d.cfg.Metrics.Allowed.Add(float64(len(seen)))
	return len(seen), nil
}
