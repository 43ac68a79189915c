package store

// recentRows remembers the metas of the rows the writer wrote last, so
// that a write to a row shortly after its insert or last change needs no
// Pebble lookup. A received mail's row lookups were eleven; three of them
// are such rows: the filter's verdict on the receive row, and smtpd's
// acknowledgement of it and its reply on the throw-in row, each a few
// milliseconds after the mail was stored. Every lookup reads the
// memtable and each level's filters whether it finds the row or not, and
// lookups were about a tenth of dbd's CPU under smtp-source load.
//
// Only the writer goroutine uses it: it puts the metas of a group once
// Pebble has applied the group (so a lookup here sees what the next
// group's probe would see), and the group's stage reads it. The writer
// is the only one that changes rows while it runs (the open-time index
// rebuild runs before it starts); if applying a group fails, the writer
// stops, so nothing is remembered that Pebble does not have.
//
// Two generations of at most recentMax rows each: when the current one
// is full it becomes the previous one, and the previous one is dropped.
// A row's meta is kept only with an inline content of at most
// recentInlineMax bytes (the rows written again soon are small); the
// caller passes a copy of it (a meta's content aliases its request's
// buffer, which may be large), which it must not change afterwards.
type recentRows struct {
	cur, prev map[rowRef]rowMeta
}

const (
	recentMax       = 4096
	recentInlineMax = 1024
)

// get returns the meta of ref if it was written recently. The meta's
// State and Inline are shared: the caller must not change them.
func (r *recentRows) get(ref rowRef) (rowMeta, bool) {
	if m, ok := r.cur[ref]; ok {
		return m, true
	}
	m, ok := r.prev[ref]
	return m, ok
}

// put remembers m as the meta of ref, or forgets ref if m is not kept.
// m's State and Inline must not change afterwards.
func (r *recentRows) put(ref rowRef, m rowMeta) {
	if len(m.Inline) > recentInlineMax {
		delete(r.cur, ref)
		delete(r.prev, ref)
		return
	}
	if r.cur == nil || len(r.cur) >= recentMax {
		r.prev, r.cur = r.cur, make(map[rowRef]rowMeta, recentMax)
	}
	r.cur[ref] = m
}
