package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/config/smsrules"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// ErrInvalid is wrapped by the error of a line that parses but cannot be
// applied (a mailbox that does not exist, a rule that is not there).
var ErrInvalid = errors.New("config: invalid")

// Source says who applies a command file, how, and when.
type Source struct {
	Who string // the admin's address, or "dbctl"
	Via string // "mail <key>" or "dbctl"
	// Mail is the config mail's key when HasMail: the plan records it,
	// so the same mail is never applied twice (Applied).
	Mail    model.Key
	HasMail bool
	// Now is the change time of the first command; command i is changed
	// at Now + i ms, so a later line outranks an earlier one on the same
	// setting, and two spamd instances applying the same mail at the same
	// attempt time write the same values.
	Now time.Time
}

// Result is the outcome of one command line.
type Result struct {
	Line     Line
	Previous string // the setting before the change (when Err is nil)
	Err      error
}

// Plan is a command file translated into one atomic batch.
type Plan struct {
	Results []Result
	// Requests is the batch: every change, its history rows and the mail
	// record. It is nil when any line failed: nothing is to be applied.
	Requests []wire.Request
	// ends[i] is where Results[i]'s requests end in Requests (for Parts).
	ends []int
}

// OK reports whether every line can be applied.
func (p *Plan) OK() bool { return p.Requests != nil }

// Part is a piece of a plan's batch, to be sent as one atomic batch: the
// requests of the lines Results[First:End], each line's whole.
type Part struct {
	Requests   []wire.Request
	First, End int
}

// Parts splits an OK plan's batch into parts of at most maxOps requests
// (dbd refuses a batch over wire.MaxBatchOps), in line order. A line's
// change and its history rows stay in one part, so each line is applied
// wholly or not at all; the mail record goes in the last part. A line of
// more than maxOps requests is a part of its own (which dbd refuses). A
// batch within maxOps is one part; an empty one, none.
func (p *Plan) Parts(maxOps int) []Part {
	if !p.OK() || len(p.Requests) == 0 {
		return nil
	}
	if len(p.ends) != len(p.Results) {
		return []Part{{Requests: p.Requests, End: len(p.Results)}}
	}
	var parts []Part
	first, start := 0, 0
	for i := range p.Results {
		end := p.ends[i]
		if i == len(p.Results)-1 {
			end = len(p.Requests)
		}
		if end-start > maxOps && i > first {
			cut := p.ends[i-1]
			parts = append(parts, Part{Requests: p.Requests[start:cut], First: first, End: i})
			first, start = i, cut
		}
	}
	return append(parts, Part{Requests: p.Requests[start:], First: first, End: len(p.Results)})
}

// readError marks an error reading dbd: the whole translation fails (the
// caller retries), unlike a line's error.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// Translate turns parsed lines into one batch, reading the current
// settings through r for the previous values and the checks. A line's
// problem is in its Result; the returned error is only a failure to read.
// Translate does not write.
func Translate(ctx context.Context, r Reader, lines []Line, src Source) (*Plan, error) {
	st := &planState{r: r, boxes: map[string]*wire.Row{}, created: map[string]bool{}, rulesOn: map[string][]model.Key{},
		cols: map[rowID]map[string]bool{}}
	p := &Plan{}
	var reqs []wire.Request
	failed := false
	i := 0
	for _, l := range lines {
		res := Result{Line: l, Err: l.Err}
		if l.Err == nil {
			t := src.Now.Add(time.Duration(i) * time.Millisecond)
			i++
			cr, prev, err := st.step(ctx, l.Cmd, t)
			if err == nil {
				err = st.fits(ctx, cr)
			}
			if errors.As(err, new(readError)) {
				return nil, err
			}
			res.Previous, res.Err = prev, err
			if err == nil {
				ch := ChangeContent(Change{When: t, Who: src.Who, Via: src.Via, Line: l.Text, Previous: prev})
				reqs = append(reqs, cr...)
				reqs = append(reqs,
					wire.Request{Op: wire.OpFindOrInsert, Table: model.Config, Content: ch},
					wire.Request{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Config, ch)},
						Name: ColChange, Value: ms(t)})
			}
		}
		failed = failed || res.Err != nil
		p.Results = append(p.Results, res)
		p.ends = append(p.ends, len(reqs))
	}
	if failed {
		return p, nil
	}
	if src.HasMail {
		mc := MailContent(src.Mail)
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: mc},
			wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, mc)},
				Name: ColApplied, Value: ms(src.Now)})
	}
	if reqs == nil {
		reqs = []wire.Request{} // an empty file: nothing to do, but OK
	}
	p.Requests = reqs
	return p, nil
}

func ms(t time.Time) uint64 { return uint64(max(t.UnixMilli(), 1)) }

type planState struct {
	r       Reader
	boxes   map[string]*wire.Row // mailbox rows read (nil: missing)
	created map[string]bool      // mailbox rows an earlier line creates
	rulesOn map[string][]model.Key
	cols    map[rowID]map[string]bool // column names of rows the plan sets, as it leaves them
}

type rowID struct {
	t model.Table
	k model.Key
}

// fits checks that the sets of one command leave every row they touch
// within model.MaxColumns, and records their new columns. dbd refuses a
// batch that would overflow a row, which would fail the whole file with
// an error that names no line; it happens for real, as every rule, zone,
// forward or secret ever set keeps its link column on the row.
func (s *planState) fits(ctx context.Context, reqs []wire.Request) error {
	added := map[rowID][]string{}
	for _, q := range reqs {
		if q.Op != wire.OpSet {
			continue
		}
		id := rowID{q.Table, q.Ref.KeyIn(q.Table)}
		have, err := s.columns(ctx, id)
		if err != nil {
			return err
		}
		if have[q.Name] || slices.Contains(added[id], q.Name) {
			continue
		}
		if len(have)+len(added[id]) >= model.MaxColumns {
			return fmt.Errorf("%w: the change needs a new column on a %s row that has the most a row may have (%d; every rule, zone, forward copy and secret ever set keeps one)",
				ErrInvalid, q.Table, model.MaxColumns)
		}
		added[id] = append(added[id], q.Name)
	}
	for id, names := range added {
		for _, n := range names {
			s.cols[id][n] = true
		}
	}
	return nil
}

// columns returns the column names of a row as the plan leaves them so
// far, reading the row the first time (a row not there yet has none).
func (s *planState) columns(ctx context.Context, id rowID) (map[string]bool, error) {
	if m, ok := s.cols[id]; ok {
		return m, nil
	}
	m := map[string]bool{}
	row, err := s.r.FindKey(ctx, id.t, id.k)
	switch {
	case errors.Is(err, client.ErrNotFound):
	case err != nil:
		return nil, readError{fmt.Errorf("read %s row %s: %w", id.t, id.k, err)}
	default:
		for n := range row.State.Cols {
			m[n] = true
		}
	}
	s.cols[id] = m
	return m, nil
}

func (s *planState) read(ctx context.Context, t model.Table, content []byte) (*wire.Row, bool, error) {
	row, ok, err := find(ctx, s.r, t, content)
	if err != nil {
		return nil, false, readError{err}
	}
	return row, ok, nil
}

// box returns the mailbox row (nil if an earlier line creates it), or an
// ErrInvalid if it does not exist.
func (s *planState) box(ctx context.Context, mb string) (*wire.Row, error) {
	row, seen := s.boxes[mb]
	if !seen {
		var ok bool
		var err error
		if row, ok, err = s.read(ctx, model.Mailbox, []byte(mb)); err != nil {
			return nil, err
		}
		if !ok {
			row = nil
		}
		s.boxes[mb] = row
	}
	if row == nil && !s.created[mb] {
		return nil, fmt.Errorf("%w: no mailbox %s (create it first: mailbox create %s)", ErrInvalid, mb, Quote(mb))
	}
	return row, nil
}

func onOff(v uint64, on, off string) string {
	switch {
	case v == 0:
		return "none"
	case model.IsMember(v):
		return on
	}
	return off
}

// step translates one command at time t.
func (s *planState) step(ctx context.Context, c Command, t time.Time) ([]wire.Request, string, error) {
	var st model.State
	if c.Kind != MailboxCreate && c.Kind != MailboxAdd && c.Kind != MailboxRemove && c.Kind != AdminAdd &&
		c.Kind != AdminRemove && c.Kind != AdminSecret {
		row, err := s.box(ctx, c.Mailbox)
		if err != nil {
			return nil, "", err
		}
		if row != nil {
			st = row.State
		}
	}
	switch c.Kind {
	case MailboxCreate:
		_, ok, err := s.read(ctx, model.Mailbox, []byte(c.Mailbox))
		if err != nil {
			return nil, "", err
		}
		s.created[c.Mailbox] = true
		prev := "none"
		if ok {
			prev = "exists"
		}
		return []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: []byte(c.Mailbox)}}, prev, nil
	case MailboxAdd, MailboxRemove:
		acct, ok, err := s.read(ctx, model.POP3, model.AccountContent(c.Login))
		if err != nil {
			return nil, "", err
		}
		prev := "no account"
		if ok {
			prev = onOff(acct.State.Col(model.MailboxColumn(model.KeyOf(model.Mailbox, []byte(c.Mailbox)))), "member", "not a member")
		}
		s.created[c.Mailbox] = true
		reqs, err := mailbox.SetMailbox(c.Login, c.Mailbox, c.Kind == MailboxAdd, t)
		return reqs, prev, invalid(err)
	case Allow, Block, Unlist:
		lc := SpamListContent(c.Mailbox, c.Value)
		row, ok, err := s.read(ctx, model.Text, lc)
		if err != nil {
			return nil, "", err
		}
		prev := "none"
		if ok {
			prev = listKind(row.State.Col(ColSpamList))
		}
		kind := map[Kind]uint64{Allow: ListAllow, Block: ListBlock, Unlist: ListRemoved}[c.Kind]
		return []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Text, Content: lc},
			{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, lc)}, Name: ColSpamList, Value: SpamListValue(t, kind)},
		}, prev, nil
	case FilterAdd, FilterRemove:
		col, err := model.HeaderFilterColumn(c.Value)
		if err != nil {
			return nil, "", invalid(err)
		}
		reqs, err := mailbox.SetHeaderFilter(c.Mailbox, c.Value, c.Kind == FilterAdd, t)
		return reqs, onOff(st.Col(col), "dropped", "not dropped"), invalid(err)
	case RuleSet, RuleRemove:
		same, prev, err := s.rules(ctx, st, c.Mailbox, c.Name)
		if err != nil {
			return nil, "", err
		}
		if c.Kind == RuleRemove {
			if len(same) == 0 {
				return nil, "", fmt.Errorf("%w: mailbox %s has no rule %s", ErrInvalid, c.Mailbox, c.Name)
			}
			s.rulesOn[c.Mailbox+"\x00"+c.Name] = nil
			return smsrules.RemoveRules(c.Mailbox, same, t), prev, nil
		}
		reqs, err := smsrules.SetRule(c.Rule, same, t)
		if err == nil {
			s.rulesOn[c.Mailbox+"\x00"+c.Name] = []model.Key{model.KeyOf(model.Text, c.Rule.Content())}
		}
		return reqs, prev, invalid(err)
	case Zone:
		prev := "UTC (none set)"
		if l := smsrules.MailboxLinks(st); l.HasZone {
			row, err := s.r.FindKey(ctx, model.Text, l.Zone)
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				return nil, "", readError{fmt.Errorf("read zone row %s: %w", l.Zone, err)}
			}
			if err == nil {
				if z, err := smsrules.ParseZone(row.Content); err == nil {
					prev = z
				}
			}
		}
		reqs, err := smsrules.SetZone(c.Mailbox, c.Value, t)
		return reqs, prev, invalid(err)
	case Policy:
		p, err := model.ParsePolicy(c.Value)
		if err != nil {
			return nil, "", invalid(err)
		}
		prev, _ := model.PolicyOf(st.Col(model.ColPolicy))
		return []wire.Request{{Op: wire.OpSet, Table: model.Mailbox, Ref: wire.Ref{Content: []byte(c.Mailbox)},
			Name: model.ColPolicy, Value: model.PolicyValue(t, p)}}, prev.String(), nil
	case ForwardAdd, ForwardRemove:
		col := model.LinkColumn(smsrules.ForwardPrefix, model.KeyOf(model.Text, smsrules.ForwardContent(c.Mailbox, c.Value)))
		reqs, err := smsrules.SetForward(c.Mailbox, c.Value, c.Kind == ForwardAdd, t)
		return reqs, onOff(st.Col(col), "on", "off"), invalid(err)
	case ListAdd, ListRemove:
		row, ok, err := s.read(ctx, model.Text, smsrules.ListEntryContent(c.Mailbox, c.List, c.Value))
		if err != nil {
			return nil, "", err
		}
		prev := "none"
		if ok {
			prev = onOff(row.State.Col(smsrules.ColList), "listed", "not listed")
		}
		reqs, err := smsrules.SetListEntry(c.Mailbox, c.List, c.Value, c.Kind == ListAdd, t)
		return reqs, prev, invalid(err)
	case AdminAdd, AdminRemove:
		ac := AdminContent(c.Value)
		row, ok, err := s.read(ctx, model.Config, ac)
		if err != nil {
			return nil, "", err
		}
		prev := "none"
		if ok {
			prev = onOff(row.State.Col(ColAdmin), "admin", "not an admin")
		}
		return []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Config, Content: ac},
			{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Config, ac)}, Name: ColAdmin, Value: model.MemberValue(t, c.Kind == AdminAdd)},
		}, prev, nil
	case AdminSecret:
		_, has, err := AdminSecretHash(ctx, s.r, c.Value)
		if err != nil {
			return nil, "", readError{err}
		}
		prev := "none"
		if has {
			prev = "a secret"
		}
		ac, sc := AdminContent(c.Value), SecretContent(c.Value, c.Hash)
		return []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Config, Content: ac},
			{Op: wire.OpFindOrInsert, Table: model.Text, Content: sc},
			{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Config, ac)},
				Name: model.PasswordColumn(model.KeyOf(model.Text, sc)), Value: ms(t)},
		}, prev, nil
	}
	return nil, "", fmt.Errorf("%w: unknown command", ErrInvalid)
}

// rules returns the keys of the mailbox's rules named name that are on
// (before this file, or switched on by an earlier line of it) and their
// lines.
func (s *planState) rules(ctx context.Context, st model.State, mb, name string) ([]model.Key, string, error) {
	if keys, ok := s.rulesOn[mb+"\x00"+name]; ok {
		prev := "none"
		if len(keys) > 0 {
			prev = "set by an earlier line"
		}
		return keys, prev, nil
	}
	var keys []model.Key
	var prev []string
	for _, k := range smsrules.MailboxLinks(st).Rules {
		row, err := s.r.FindKey(ctx, model.Text, k)
		if errors.Is(err, client.ErrNotFound) {
			continue // linked, not replicated here yet: smsd skips it too
		}
		if err != nil {
			// Not a rule to skip: it may be the one of this name, which
			// the plan must switch off, or two rules would be on.
			return nil, "", readError{fmt.Errorf("read rule row %s: %w", k, err)}
		}
		r, err := smsrules.ParseRule(row.Content)
		if err != nil || r.Name != name {
			continue
		}
		keys = append(keys, k)
		prev = append(prev, RuleLine(r))
	}
	if len(prev) == 0 {
		return keys, "none", nil
	}
	return keys, strings.Join(prev, " ; "), nil
}

func listKind(v uint64) string {
	switch v & 3 {
	case ListAllow:
		return "allow"
	case ListBlock:
		return "block"
	}
	return "none"
}

// invalid marks a row-format error of a line as the line's error.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}
