package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
	rules "github.com/twinmx/twinmx/pkg/wire/config/smsrules"
)

// mailboxConf is what a mailbox's rows say, read for one look.
type mailboxConf struct {
	address  string
	loc      *time.Location
	rules    []rules.Rule // sorted by name
	forwards []string     // sorted
}

// maxTexts bounds the cache of text row contents.
const maxTexts = 4096

// text returns a text row's content; contents never change, so they are
// cached. ok is false when the row is not (yet) here.
func (e *Engine) text(ctx context.Context, k model.Key) ([]byte, bool, error) {
	e.mu.Lock()
	b, ok := e.texts[k]
	e.mu.Unlock()
	if ok {
		return b, true, nil
	}
	row, err := e.cfg.DB.FindKey(ctx, model.Text, k)
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, nil // linked, not replicated here yet
	}
	if err != nil {
		return nil, false, fmt.Errorf("read text row %s: %w", k, err)
	}
	e.mu.Lock()
	if len(e.texts) >= maxTexts {
		clear(e.texts)
	}
	e.texts[k] = row.Content
	e.mu.Unlock()
	return row.Content, true, nil
}

func (e *Engine) mailboxConfig(ctx context.Context, box model.Key) (mailboxConf, error) {
	var c mailboxConf
	row, err := e.cfg.DB.FindKey(ctx, model.Mailbox, box)
	if errors.Is(err, client.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read mailbox: %w", err)
	}
	c.address, c.loc = string(row.Content), time.UTC
	links := rules.MailboxLinks(row.State)
	if links.HasZone {
		if b, ok, err := e.text(ctx, links.Zone); err != nil {
			return c, err
		} else if ok {
			if z, err := rules.ParseZone(b); err == nil {
				if loc, err := time.LoadLocation(z); err == nil {
					c.loc = loc
				} else {
					e.log.Warn("unknown time zone; using UTC", "mailbox", c.address, "zone", z)
				}
			}
		}
	}
	for _, k := range links.Rules {
		b, ok, err := e.text(ctx, k)
		if err != nil {
			return c, err
		}
		if !ok {
			continue
		}
		r, err := rules.ParseRule(b)
		if err != nil || r.Mailbox != c.address {
			e.log.Warn("skipping a bad rule row", "mailbox", c.address, "row", k, "err", err)
			continue
		}
		c.rules = append(c.rules, r)
	}
	slices.SortFunc(c.rules, func(a, b rules.Rule) int { return cmpString(a.Name, b.Name) })
	for _, k := range links.Forwards {
		b, ok, err := e.text(ctx, k)
		if err != nil {
			return c, err
		}
		if !ok {
			continue
		}
		if to, err := rules.ParseForward(b); err == nil && !slices.Contains(c.forwards, to) {
			c.forwards = append(c.forwards, to)
		}
	}
	slices.Sort(c.forwards)
	return c, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// smsTargets returns the numbers to text for the row's mail and each
// number's text (the first matching rule, by name, that lists the number).
func (e *Engine) smsTargets(ctx context.Context, j *job, c mailboxConf) (map[string]string, error) {
	m, err := e.mailInfo(ctx, j, c)
	if err != nil {
		return nil, err
	}
	lists := func(list, sender string) (bool, error) {
		for _, k := range rules.ListEntryKeys(c.address, list, sender) {
			row, err := e.cfg.DB.FindKey(ctx, model.Text, k)
			if errors.Is(err, client.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("read list entry: %w", err)
			}
			if model.IsMember(row.State.Col(rules.ColList)) {
				return true, nil
			}
		}
		return false, nil
	}
	out := map[string]string{}
	for _, r := range c.rules {
		ok, err := r.Matches(m, c.loc, lists)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if r.Template.UsesLine() && m.Line == "" {
			if m.Line, err = e.bodyLine(ctx, j); err != nil {
				return nil, err
			}
		}
		for _, p := range r.Phones {
			if _, dup := out[p]; !dup {
				out[p] = r.Template.Text(m, r.Name, c.loc)
			}
		}
	}
	return out, nil
}

// mailInfo reads the sender and subject from the mail's header, and the
// time the mail was acknowledged (the receive row's first rcvd link).
func (e *Engine) mailInfo(ctx context.Context, j *job, c mailboxConf) (rules.Mail, error) {
	m := rules.Mail{Mailbox: c.address, Time: j.seen}
	if t, ok := ackTime(j.row.State); ok {
		m.Time = t
	}
	hk, _, err := e.mailParts(ctx, j)
	if err != nil {
		return m, err
	}
	h, err := e.cfg.DB.FindKey(ctx, model.Header, hk)
	if err != nil {
		return m, fmt.Errorf("read header: %w", err)
	}
	m.From, m.Subject = headerInfo(h.Content)
	return m, nil
}

func (e *Engine) mailParts(ctx context.Context, j *job) (header, body model.Key, err error) {
	mr, err := e.cfg.DB.FindKey(ctx, model.Mail, j.mail)
	if err != nil {
		return header, body, fmt.Errorf("read mail row: %w", err)
	}
	return model.ParseMailContent(mr.Content)
}

func (e *Engine) bodyLine(ctx context.Context, j *job) (string, error) {
	hk, bk, err := e.mailParts(ctx, j)
	if err != nil {
		return "", err
	}
	h, err := e.cfg.DB.FindKey(ctx, model.Header, hk)
	if err != nil {
		return "", fmt.Errorf("read header: %w", err)
	}
	b, err := e.cfg.DB.FindKey(ctx, model.Body, bk)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	return firstLine(h.Content, b.Content), nil
}

// ackTime returns when the mail was acknowledged: the smallest value of
// the receive row's rcvd.* links (Unix ms, see model.ReceivedColumn).
func ackTime(st model.State) (time.Time, bool) {
	var best uint64
	for name, v := range st.Cols {
		if _, ok := model.ParseReceivedColumn(name); ok && v > 1 && (best == 0 || v < best) {
			best = v
		}
	}
	if best == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(best)), true
}
