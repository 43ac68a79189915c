package session

import (
	"cmp"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// ThreadAlgorithms implements imapserver.SessionThread.
func (s *Session) ThreadAlgorithms() []imap.ThreadAlgorithm {
	return []imap.ThreadAlgorithm{imap.ThreadOrderedSubject, imap.ThreadReferences}
}

// threadMsg is what threading knows of one matching message.
type threadMsg struct {
	num   uint32 // sequence number or UID, as the command asked
	seq   uint32
	date  int64 // sent date (RFC 5256 §2.2), Unix ms
	base  string
	reply bool     // the subject had a reply or forward marker
	id    string   // Message-ID
	refs  []string // References, else the first In-Reply-To message ID
}

// compare orders messages by sent date, then mailbox order (§2.2).
func (m *threadMsg) compare(o *threadMsg) int {
	if c := cmp.Compare(m.date, o.date); c != 0 {
		return c
	}
	return cmp.Compare(m.seq, o.seq)
}

// Thread implements imapserver.SessionThread (RFC 5256 §3).
func (s *Session) Thread(kind imapserver.NumKind, algorithm imap.ThreadAlgorithm, search *imap.SearchCriteria) (threads []imapserver.Thread, err error) {
	defer s.track("thread", &err)()
	if searchKeys(search, maxSearchKeys) > maxSearchKeys {
		return nil, errSearchTooBig
	}
	var msgs []*threadMsg
	err = s.scan(search, true, func(c *candidate) {
		m := &threadMsg{num: c.seq, seq: c.seq, date: c.sortValue(imapserver.SortKeyDate).n}
		if kind == imapserver.NumKindUID {
			m.num = uint32(c.msg.uid)
		}
		h := c.header()
		if v := searchHeader(h, "Subject"); len(v) > 0 {
			m.base, m.reply = baseSubject(string(v[0]))
			m.base = casemap(m.base)
		}
		if v := searchHeader(h, "Message-ID"); len(v) > 0 {
			if ids := msgIDs(string(v[0])); len(ids) > 0 {
				m.id = ids[0]
			}
		}
		if v := searchHeader(h, "References"); len(v) > 0 {
			m.refs = msgIDs(string(v[0]))
		}
		if len(m.refs) == 0 {
			if v := searchHeader(h, "In-Reply-To"); len(v) > 0 {
				if ids := msgIDs(string(v[0])); len(ids) > 0 {
					m.refs = ids[:1]
				}
			}
		}
		msgs = append(msgs, m)
	})
	if err != nil {
		return nil, err
	}
	if algorithm == imap.ThreadOrderedSubject {
		return orderedSubject(msgs), nil
	}
	return references(msgs), nil
}

// msgIDs returns the message IDs ("<...>", white space inside removed) in
// a field value, in order. A "<" before the ">" starts the ID afresh: a
// mail program wrote `<"from <id@host>` once (corpus), and the ID it
// meant is the inner one, as Dovecot reads it.
func msgIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return ids
		}
		j := strings.IndexAny(v[i+1:], "<>")
		if j < 0 {
			return ids
		}
		if v[i+1+j] == '<' {
			v = v[i+1+j:]
			continue
		}
		j++
		id := strings.Join(strings.Fields(v[i:i+j+1]), "")
		if len(id) > 2 {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
}

// orderedSubject is THREAD=ORDEREDSUBJECT: messages of one base subject
// form a thread, the earliest the parent of the others (siblings in date
// order); threads in the order of their first message.
func orderedSubject(msgs []*threadMsg) []imapserver.Thread {
	slices.SortFunc(msgs, func(a, b *threadMsg) int {
		if c := strings.Compare(a.base, b.base); c != 0 {
			return c
		}
		return a.compare(b)
	})
	type group struct {
		first *threadMsg
		t     imapserver.Thread
	}
	var groups []group
	for i, m := range msgs {
		if i > 0 && m.base == msgs[i-1].base {
			g := &groups[len(groups)-1]
			g.t.Children = append(g.t.Children, imapserver.Thread{Num: m.num})
			continue
		}
		groups = append(groups, group{first: m, t: imapserver.Thread{Num: m.num}})
	}
	slices.SortFunc(groups, func(a, b group) int { return a.first.compare(b.first) })
	out := make([]imapserver.Thread, len(groups))
	for i, g := range groups {
		out[i] = g.t
	}
	return out
}

// container is a node of THREAD=REFERENCES: a message, or a dummy for a
// message referred to but not among those threaded.
type container struct {
	msg      *threadMsg
	parent   *container
	children []*container
}

func (c *container) adopt(child *container) {
	child.parent = c
	c.children = append(c.children, child)
}

func (c *container) unlink() {
	if p := c.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(x *container) bool { return x == c })
		c.parent = nil
	}
}

// reaches reports whether c is d or one of d's ancestors.
func (c *container) reaches(d *container) bool {
	for x := d; x != nil; x = x.parent {
		if x == c {
			return true
		}
	}
	return false
}

// first is the message a container sorts and is named by: its own, or a
// dummy's first child's (children sorted).
func (c *container) first() *threadMsg {
	for c.msg == nil {
		c = c.children[0]
	}
	return c.msg
}

// references is THREAD=REFERENCES (RFC 5256 §3), step by step.
func references(msgs []*threadMsg) []imapserver.Thread {
	// (1) Link messages by their Message-IDs and references.
	byID := map[string]*container{}
	var all []*container // in order of creation, for a stable root list
	get := func(id string) *container {
		c := byID[id]
		if c == nil {
			c = &container{}
			byID[id] = c
			all = append(all, c)
		}
		return c
	}
	for _, m := range msgs {
		c := byID[m.id]
		if m.id == "" || c != nil && c.msg != nil {
			// No or a duplicate Message-ID: a container of its own.
			c = &container{}
			all = append(all, c)
		} else {
			c = get(m.id)
		}
		c.msg = m
		var prev *container
		for _, r := range m.refs {
			rc := get(r)
			// (1A) Keep an existing parent; never make a loop.
			if prev != nil && rc.parent == nil && !rc.reaches(prev) {
				prev.adopt(rc)
			}
			prev = rc
		}
		// (1B) The last reference is the parent, whatever was before.
		c.unlink()
		if prev != nil && !c.reaches(prev) {
			prev.adopt(c)
		}
	}
	// (2) Every container without a parent is under the root.
	var top []*container
	for _, c := range all {
		if c.parent == nil {
			top = append(top, c)
		}
	}
	// (3) Prune dummies.
	top = prune(top, true)
	// (4) Sort the top level by sent date (a dummy by its first child).
	for _, c := range top {
		if c.msg == nil {
			sortSiblings(c.children)
		}
	}
	sortSiblings(top)
	// (5) Gather top-level threads of one base subject.
	table := map[string]*container{}
	for _, c := range top {
		m := c.first()
		if m.base == "" {
			continue
		}
		t := table[m.base]
		if t == nil || t.msg != nil && (c.msg == nil || t.msg.reply && !c.msg.reply) {
			table[m.base] = c
		}
	}
	gone := map[*container]bool{}
	replaced := map[*container]*container{}
	for _, c := range top {
		m := c.first()
		t := table[m.base]
		if m.base == "" || t == c || gone[c] {
			continue
		}
		switch {
		case t.msg == nil && c.msg == nil:
			for _, ch := range c.children {
				t.adopt(ch)
			}
			c.children = nil
		case t.msg == nil:
			t.adopt(c)
		case c.msg != nil && c.msg.reply && !t.msg.reply:
			t.adopt(c)
		default:
			// A new dummy takes t's place at the top, with t and c
			// under it; the table names it from now on.
			d := &container{}
			d.adopt(t)
			d.adopt(c)
			replaced[t] = d
			table[m.base] = d
		}
		gone[c] = true
	}
	var merged []*container
	for _, c := range top {
		switch {
		case gone[c]:
		case replaced[c] != nil:
			merged = append(merged, replaced[c])
		default:
			merged = append(merged, c)
		}
	}
	// (6) Sort every set of siblings, the deepest first.
	var sortTree func(cs []*container)
	sortTree = func(cs []*container) {
		for _, c := range cs {
			sortTree(c.children)
		}
		sortSiblings(cs)
	}
	sortTree(merged)
	out := make([]imapserver.Thread, len(merged))
	for i, c := range merged {
		out[i] = toThread(c)
	}
	return out
}

// prune removes dummies without children and promotes the children of
// the others, but not to the top level unless there is one (step 3).
func prune(cs []*container, top bool) []*container {
	var out []*container
	for _, c := range cs {
		c.children = prune(c.children, false)
		if c.msg == nil {
			if len(c.children) == 0 {
				continue
			}
			if !top || len(c.children) == 1 {
				for _, ch := range c.children {
					ch.parent = c.parent
				}
				out = append(out, c.children...)
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

func sortSiblings(cs []*container) {
	slices.SortStableFunc(cs, func(a, b *container) int { return a.first().compare(b.first()) })
}

func toThread(c *container) imapserver.Thread {
	t := imapserver.Thread{Children: make([]imapserver.Thread, len(c.children))}
	if c.msg != nil {
		t.Num = c.msg.num
	}
	for i, ch := range c.children {
		t.Children[i] = toThread(ch)
	}
	return t
}
