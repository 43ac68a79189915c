package backupdtest

import (
	"context"
	"fmt"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Mail is a test mail as smtpd stores it: one batch of its rows.
type Mail struct {
	Rows    model.MailRows
	Recv    []byte // receive row content
	RecvKey model.Key
}

// NewMail makes mail number i for mailbox to; i%100 sets its body size.
func NewMail(i int, to string) Mail {
	raw := fmt.Sprintf("Received: from x by y; %d\r\nMessage-ID: <%d@test>\r\nSubject: test %d\r\n\r\nbody %d %x\r\n",
		i, i, i, i, make([]byte, i%100))
	mr := model.NewMailRows([]byte(raw))
	recv := model.ReceiveContent(mr.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(to)))
	return Mail{Rows: mr, Recv: recv, RecvKey: model.KeyOf(model.Receive, recv)}
}

// Batch is the find-or-insert batch smtpd sends for the mail.
func (m Mail) Batch() []wire.Request {
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: m.Rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: m.Rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: m.Rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: m.Recv},
	}
	if len(m.Rows.Received) > 0 {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Received, Content: m.Rows.Received})
	}
	if m.Rows.MsgID != nil {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.MsgID, Content: m.Rows.MsgID})
	}
	return reqs
}

// Marked reports whether all four rows of m carry the backed-up mark at
// the site of c (admin role).
func Marked(ctx context.Context, c *client.Client, m Mail) (bool, error) {
	for _, r := range []struct {
		t model.Table
		k model.Key
	}{{model.Receive, m.RecvKey}, {model.Mail, m.Rows.MailKey}, {model.Header, m.Rows.HeaderKey}, {model.Body, m.Rows.BodyKey}} {
		row, err := c.FindKey(ctx, r.t, r.k)
		if err != nil {
			return false, fmt.Errorf("find %s: %w", r.t, err)
		}
		if row.State.Col(model.ColBackedUp) != model.FlagSet {
			return false, nil
		}
	}
	return true, nil
}

// WaitMark waits, by watching the receive row as smtpd does, until m's
// receive row at c's site carries the mark.
func WaitMark(ctx context.Context, c *client.Client, m Mail) error {
	st, err := c.Watch(ctx, model.Receive, []model.Key{m.RecvKey}, true)
	if err != nil {
		return err
	}
	defer st.Close()
	for {
		row, err := st.Next(ctx)
		if err != nil {
			return err
		}
		if row.State.Col(model.ColBackedUp) == model.FlagSet {
			return nil
		}
	}
}
