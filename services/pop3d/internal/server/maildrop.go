package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// UIDLen is the length of a UIDL in hex digits: the first 128 bits of the
// receive row's key. RFC 1939 §7 allows 1 to 70 characters of 0x21-0x7E.
const UIDLen = 32

// UID returns the POP3 unique-id of a receive row: the same on every site.
func UID(receive model.Key) string { return hex.EncodeToString(receive[:UIDLen/2]) }

// message is one mail of a session's maildrop.
type message struct {
	m       mailbox.Message
	drop    []string // the mailbox's header filter
	uid     string
	size    int64 // octets LIST reports: pop3.SentSize; valid when sized
	sized   bool
	deleted bool // marked by DELE
}

// sizePrefix starts the receive column in which pop3d keeps a message's
// size as POP3 counts it (pop3.SentSize of what Store.Fetch returns: bare
// LFs as CRLF, a final CRLF added), so that LIST and STAT are exact
// without reading the mail again. The column's name links a key that
// stands for everything the size depends on besides the mail: the received
// row of the acknowledged delivery (it can change when the other site's
// earlier acknowledgement replicates) and the mailbox's header filter.
// The size is a function of the name, so both sites compute the same value
// and the column's max-merge keeps it. 0 (no column) means not known.
const sizePrefix = model.POP3SizePrefix

// sizeColumn returns the name of the size column of m read through the
// header filter drop.
func sizeColumn(m mailbox.Message, drop []string) string {
	rk, _ := model.MailReceived(m.State) // the zero key: no received row
	if len(drop) == 0 {
		return model.POP3SizeColumn(rk) // smtpd sets it for the mail it acknowledges
	}
	names := make([]string, len(drop))
	for i, d := range drop {
		names[i] = strings.ToLower(d)
	}
	slices.Sort(names)
	id := append(rk[:], "\x00pop3 header filter\x00"+strings.Join(names, "\x00")...)
	return model.LinkColumn(sizePrefix, model.KeyOf(model.Text, id))
}

// maildrop is the mail a session sees, numbered from 1. Owned by the
// connection's goroutine.
type maildrop struct {
	msgs []message
}

// openMaildrop lists the acknowledged mail of every mailbox of acct,
// ordered by (local row number, mailbox key).
func openMaildrop(ctx context.Context, st Store, acct *mailbox.Account) (*maildrop, error) {
	d := &maildrop{}
	seen := map[model.Key]bool{}
	for _, b := range acct.Mailboxes {
		ms, err := st.Messages(ctx, b.Key, 0)
		if err != nil {
			return nil, fmt.Errorf("list mailbox %s: %w", b.Address, err)
		}
		for _, m := range ms {
			if seen[m.Receive] {
				continue
			}
			seen[m.Receive] = true
			msg := message{m: m, drop: b.Drop, uid: UID(m.Receive)}
			if v := m.State.Col(sizeColumn(m, b.Drop)); v > 0 {
				msg.size, msg.sized = int64(v), true
			}
			d.msgs = append(d.msgs, msg)
		}
	}
	sortMessages(d.msgs)
	return d, nil
}

func sortMessages(ms []message) {
	slices.SortFunc(ms, func(a, b message) int {
		if a.m.RowNo != b.m.RowNo {
			if a.m.RowNo < b.m.RowNo {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.m.Mailbox[:], b.m.Mailbox[:])
	})
}

// get returns message n (1-based) unless it is missing or marked deleted.
func (d *maildrop) get(n int) (*message, error) {
	if n < 1 || n > len(d.msgs) {
		return nil, errNoSuchMessage
	}
	m := &d.msgs[n-1]
	if m.deleted {
		return nil, errDeleted
	}
	return m, nil
}

// sizeAll makes every message not marked deleted sized, with at most
// workers fetches at once (so at most workers mails in memory). A size not
// cached in the receive row needs the mail: only the octets POP3 sends
// count (RFC 1939 §5), and they depend on its line ends, which only its
// content tells. What it measured it caches, under ctx or, once ctx has
// failed, under base (the server's context) for at most rememberTimeout.
func (d *maildrop) sizeAll(ctx, base context.Context, st Store, workers int) error {
	var todo []*message
	for i := range d.msgs {
		if m := &d.msgs[i]; !m.sized && !m.deleted {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raws := make(map[*message]int64, len(todo)) // stored octets, for RememberSizes
	next := make(chan *message)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(workers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range next {
				raw, err := st.Fetch(ctx, m.m, m.drop)
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("size message %s: %w", m.uid, err)
					cancel()
				}
				if err == nil {
					m.size, m.sized = pop3.SentSize(raw), true
					raws[m] = int64(len(raw))
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, m := range todo {
		select {
		case next <- m:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		// Keep what was measured before the failure: the usual one is
		// DBTimeout running out on a maildrop too large to read in one,
		// and a next session that had to start again from the first mail
		// would fail the same way, for ever. ctx may be spent, so the
		// writes get their own bound.
		rctx, rcancel := context.WithTimeout(base, rememberTimeout)
		defer rcancel()
		rememberSizes(rctx, st, todo, raws)
		return fmt.Errorf("size messages: %w", first)
	}
	rememberSizes(ctx, st, todo, raws)
	return nil
}

// rememberTimeout bounds the caching of sizes measured by a listing that
// failed (its own context may have expired).
const rememberTimeout = 5 * time.Second

// rememberSizes caches the sizes of msgs, just measured, in their receive
// rows: pop3d's exact size, and the stored size of unfiltered mail that
// imapd reads (mailbox.Store.RememberSizes). Best effort: on failure the
// next login measures again.
func rememberSizes(ctx context.Context, st Store, msgs []*message, raws map[*message]int64) {
	var keys []model.Key
	var names []string
	var values []uint64
	var unfiltered []mailbox.Message
	var rawSizes []int64
	for _, m := range msgs {
		if !m.sized || m.size <= 0 {
			continue
		}
		if name := sizeColumn(m.m, m.drop); m.m.State.Col(name) == 0 {
			keys, names, values = append(keys, m.m.Receive), append(names, name), append(values, uint64(m.size))
		}
		if len(m.drop) == 0 {
			unfiltered, rawSizes = append(unfiltered, m.m), append(rawSizes, raws[m])
		}
	}
	if len(keys) > 0 {
		_ = st.SetReceiveColumns(ctx, keys, names, values)
	}
	_ = st.RememberSizes(ctx, unfiltered, rawSizes)
}

// commit marks the messages flagged by DELE deleted in the store (the
// UPDATE state, RFC 1939 §6) and returns how many.
func (d *maildrop) commit(c *conn) (int, error) {
	var keys []model.Key
	for _, m := range d.msgs {
		if m.deleted {
			keys = append(keys, m.m.Receive)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.cfg.Store.Delete(ctx, keys); err != nil {
		return len(keys), err
	}
	return len(keys), nil
}

// stat answers STAT (RFC 1939 §5).
func (c *conn) stat() error {
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.drop.sizeAll(ctx, c.s.ctx, c.s.cfg.Store, c.s.cfg.SizeWorkers); err != nil {
		return err
	}
	n, total := 0, int64(0)
	for _, m := range c.drop.msgs {
		if !m.deleted {
			n++
			total += m.size
		}
	}
	return c.ok(fmt.Sprintf("%d %d", n, total))
}

// list answers LIST [msg].
func (c *conn) list(n int) error {
	ctx, cancel := c.storeCtx()
	defer cancel()
	if n > 0 {
		m, err := c.drop.get(n)
		if err != nil {
			return err
		}
		if !m.sized {
			raw, err := c.s.cfg.Store.Fetch(ctx, m.m, m.drop)
			if err != nil {
				return fmt.Errorf("size message %s: %w", m.uid, err)
			}
			m.size, m.sized = pop3.SentSize(raw), true
			rememberSizes(ctx, c.s.cfg.Store, []*message{m}, map[*message]int64{m: int64(len(raw))})
		}
		return c.ok(fmt.Sprintf("%d %d", n, m.size))
	}
	if err := c.drop.sizeAll(ctx, c.s.ctx, c.s.cfg.Store, c.s.cfg.SizeWorkers); err != nil {
		return err
	}
	c.ok("scan listing follows")
	for i, m := range c.drop.msgs {
		if !m.deleted {
			fmt.Fprintf(c.w, "%d %d\r\n", i+1, m.size)
		}
	}
	if !c.writeLine(".") {
		return errIO
	}
	return nil
}

// uidl answers UIDL [msg] (RFC 1939 §7); it needs no store call.
func (c *conn) uidl(n int) error {
	if n > 0 {
		m, err := c.drop.get(n)
		if err != nil {
			return err
		}
		return c.ok(fmt.Sprintf("%d %s", n, m.uid))
	}
	c.ok("unique-id listing follows")
	for i, m := range c.drop.msgs {
		if !m.deleted {
			fmt.Fprintf(c.w, "%d %s\r\n", i+1, m.uid)
		}
	}
	if !c.writeLine(".") {
		return errIO
	}
	return nil
}

// retr answers RETR (lines < 0) and TOP.
func (c *conn) retr(n, lines int) error {
	m, err := c.drop.get(n)
	if err != nil {
		return err
	}
	raw, ok := c.ahead.take(n)
	if !ok {
		ctx, cancel := c.storeCtx()
		defer cancel()
		if raw, err = c.s.cfg.Store.Fetch(ctx, m.m, m.drop); err != nil {
			return fmt.Errorf("fetch message %s: %w", m.uid, err)
		}
	}
	if lines < 0 {
		c.prefetch(n)
	}
	m.size, m.sized = pop3.SentSize(raw), true
	if lines < 0 {
		c.ok(fmt.Sprintf("%d octets", m.size))
	} else {
		c.ok("top of message follows")
	}
	sent, err := pop3.WriteMessage(c.w, raw, lines)
	c.s.cfg.Store.Recycle(raw) // written into c.w's buffer or the socket
	c.sent += sent
	c.s.m.BytesSent.Add(float64(sent))
	if err != nil {
		return fmt.Errorf("%w: send message: %v", errIO, err)
	}
	if lines < 0 {
		c.retrieved++
	}
	return nil
}

// dele answers DELE: the message is only marked until QUIT.
func (c *conn) dele(n int) error {
	m, err := c.drop.get(n)
	if err != nil {
		return err
	}
	m.deleted = true
	return c.ok(fmt.Sprintf("message %d deleted", n))
}

// rset answers RSET: every mark is removed.
func (c *conn) rset() error {
	for i := range c.drop.msgs {
		c.drop.msgs[i].deleted = false
	}
	return c.ok(fmt.Sprintf("%d messages", len(c.drop.msgs)))
}
