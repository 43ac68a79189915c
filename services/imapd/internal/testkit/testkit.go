// Package testkit puts accounts and mail into a dbd the way dbctl and
// smtpd do, for imapd's tests (in-process and black-box). Tests only.
package testkit

import (
	"context"
	"fmt"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
)

// Batcher is a dbd client with a role that may write everything used here
// (admin).
type Batcher interface {
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

// Cheap are argon2id parameters fast enough for tests.
var Cheap = passwd.Params{MemoryKiB: 256, Time: 1, Threads: 1}

// AddUser creates login with password and gives it the mailbox address.
func AddUser(ctx context.Context, db Batcher, login, password, address string) error {
	hash, err := passwd.Hash(password, Cheap)
	if err != nil {
		return err
	}
	now := time.Now()
	pw, err := mailbox.SetPassword(login, hash, now)
	if err != nil {
		return err
	}
	mb, err := mailbox.SetMailbox(login, address, true, now)
	if err != nil {
		return err
	}
	if _, err := db.Batch(ctx, append(pw, mb...)); err != nil {
		return fmt.Errorf("add user %s: %w", login, err)
	}
	return nil
}

// Deliver stores raw in the mailbox address as smtpd does (header, body,
// received, mail, msgid and receive rows) and, with ack, acknowledges it
// at time at (received link valued at Unix ms). It returns the receive
// row's key.
func Deliver(ctx context.Context, db Batcher, address string, raw []byte, ack bool, at time.Time) (model.Key, error) {
	box := model.KeyOf(model.Mailbox, model.MailboxContent(address))
	rows := model.NewMailRows(raw)
	rc := model.ReceiveContent(rows.MailKey, box)
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent(address)},
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
	}
	if rows.MsgID != nil {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.MsgID, Content: rows.MsgID})
	}
	if ack {
		ref := wire.Ref{Content: rc}
		reqs = append(reqs,
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: uint64(max(at.UnixMilli(), 1))})
	}
	if _, err := db.Batch(ctx, reqs); err != nil {
		return model.Key{}, fmt.Errorf("deliver to %s: %w", address, err)
	}
	return model.KeyOf(model.Receive, rc), nil
}

// DeliverMany stores raws in the mailbox address like Deliver with ack,
// in one dbd batch (callers keep batches to a few hundred mails), so big
// mailboxes are quick to fill.
func DeliverMany(ctx context.Context, db Batcher, address string, raws [][]byte, at time.Time) error {
	box := model.KeyOf(model.Mailbox, model.MailboxContent(address))
	reqs := []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent(address)}}
	for _, raw := range raws {
		rows := model.NewMailRows(raw)
		rc := model.ReceiveContent(rows.MailKey, box)
		ref := wire.Ref{Content: rc}
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: uint64(max(at.UnixMilli(), 1))})
		if rows.MsgID != nil {
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.MsgID, Content: rows.MsgID})
		}
	}
	if _, err := db.Batch(ctx, reqs); err != nil {
		return fmt.Errorf("deliver %d mails to %s: %w", len(raws), address, err)
	}
	return nil
}
