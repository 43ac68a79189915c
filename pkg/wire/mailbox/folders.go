package mailbox

import (
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// CreateFolderRequests are the batch requests that create login's user
// folder id named name at now: the folder set row with the folder a
// member, the folder row, and its name row linked as the current name.
// imapd's CREATE and dbctl's import of a folder write exactly these, so a
// folder made by either is the same to both.
func CreateFolderRequests(login string, id model.FolderID, name string, now time.Time) []wire.Request {
	setC := model.FolderSetContent(login)
	fc := model.FolderContent(login, id)
	nc := model.FolderNameContent(id, name)
	return []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: setC},
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: fc},
		{Op: wire.OpFindOrInsert, Table: model.Text, Content: nc},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: fc}, Name: model.FolderNameColumn(model.KeyOf(model.Text, nc)),
			Value: model.NameValue(model.State{}, now)},
		{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{Content: setC}, Name: model.FolderColumn(id), Value: model.MemberValue(now, true)},
	}
}
