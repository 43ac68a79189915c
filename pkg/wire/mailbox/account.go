package mailbox

import (
	"fmt"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// SetPassword returns the batch that creates login's account if it does not
// exist and makes hash (a passwd.Hash PHC string) its password as of now.
func SetPassword(login, hash string, now time.Time) ([]wire.Request, error) {
	if err := model.CheckLogin(login); err != nil {
		return nil, err
	}
	acct := model.AccountContent(login)
	pw := model.PasswordContent(login, hash)
	return []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.POP3, Content: acct},
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: pw},
		{Op: wire.OpSet, Table: model.POP3, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.POP3, acct)},
			Name: model.PasswordColumn(model.KeyOf(model.Text, pw)), Value: uint64(max(now.UnixMilli(), 1))},
	}, nil
}

// SetMailbox returns the batch that gives login's account the mailbox
// address (member) or takes it away, as of now. The mailbox row is created
// if missing, so the address also receives mail.
func SetMailbox(login, address string, member bool, now time.Time) ([]wire.Request, error) {
	if err := model.CheckLogin(login); err != nil {
		return nil, err
	}
	mb := model.MailboxContent(address)
	if len(mb) == 0 {
		return nil, fmt.Errorf("%w: empty mailbox address", model.ErrBadName)
	}
	acct := model.AccountContent(login)
	return []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.POP3, Content: acct},
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: mb},
		{Op: wire.OpSet, Table: model.POP3, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.POP3, acct)},
			Name: model.MailboxColumn(model.KeyOf(model.Mailbox, mb)), Value: model.MemberValue(now, member)},
	}, nil
}

// SetHeaderFilter returns the batch that makes mailbox address drop (or no
// longer drop) the header field name on retrieval, as of now.
func SetHeaderFilter(address, name string, drop bool, now time.Time) ([]wire.Request, error) {
	col, err := model.HeaderFilterColumn(name)
	if err != nil {
		return nil, err
	}
	mb := model.MailboxContent(address)
	return []wire.Request{
		{Op: wire.OpSet, Table: model.Mailbox, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Mailbox, mb)},
			Name: col, Value: model.MemberValue(now, drop)},
	}, nil
}
