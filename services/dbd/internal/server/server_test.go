package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
	"github.com/twinmx/twinmx/services/dbd/internal/server"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOperations(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	c := e.Client(auth.Admin)
	ctx := ctxT(t)
	no, isNew, err := c.FindOrInsert(ctx, model.Body, []byte("hello"))
	if err != nil || no != 1 || !isNew {
		t.Fatalf("FindOrInsert = %d, %v, %v; want 1, true", no, isNew, err)
	}
	if no, isNew, _ = c.FindOrInsert(ctx, model.Body, []byte("hello")); no != 1 || isNew {
		t.Fatalf("second FindOrInsert = %d, %v; want 1, false", no, isNew)
	}
	ref := wire.Ref{Content: []byte("hello")}
	if _, err := c.Set(ctx, model.Body, ref, "verdict", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, model.Body, ref, "verdict", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Increment(ctx, model.Body, ref, "hits", 2); err != nil {
		t.Fatal(err)
	}
	row, err := c.FindKey(ctx, model.Body, model.KeyOf(model.Body, []byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	if string(row.Content) != "hello" || row.State.Col("verdict") != 7 || row.State.Counter("hits") != 2 {
		t.Fatalf("row = %+v", row)
	}
	if _, err := c.Find(ctx, model.Body, []byte("nope")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Find(missing) = %v, want ErrNotFound", err)
	}
	if _, err := c.Set(ctx, model.Body, wire.Ref{Content: []byte("nope")}, "x", 1); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Set(missing) = %v, want ErrNotFound", err)
	}
	res, err := c.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: []byte("h")},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: []byte("hello")},
		{Op: wire.OpSet, Table: model.Header, Ref: wire.Ref{Content: []byte("h")}, Name: "ack", Value: 1},
	})
	if err != nil || !res[0].New || res[1].New || res[2].NotFound {
		t.Fatalf("Batch = %+v, %v", res, err)
	}
	st, err := c.Scan(ctx, model.Body, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Next(ctx)
	if err != nil || r.RowNo != 1 {
		t.Fatalf("scan first = %+v, %v", r, err)
	}
	if _, err := st.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("scan end = %v, want EOF", err)
	}
	figs, err := c.Status(ctx)
	if err != nil || len(figs) == 0 {
		t.Fatalf("Status = %v, %v", figs, err)
	}
}

func TestRolesEnforced(t *testing.T) {
	logs := &syncBuffer{}
	e := dbdtest.Start(t, dbdtest.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	admin, smtpd, pop := e.Client(auth.Admin), e.Client(auth.SMTPD), e.Client(auth.Mailbox)
	if _, _, err := smtpd.FindOrInsert(ctx, model.Body, []byte("mail body")); err != nil {
		t.Fatalf("smtpd insert body: %v", err)
	}
	forbidden := func(name string, err error) {
		t.Helper()
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
			t.Errorf("%s: err = %v, want forbidden", name, err)
		}
	}
	_, err := smtpd.Find(ctx, model.Body, []byte("mail body"))
	forbidden("smtpd reads a body", err)
	_, err = smtpd.Set(ctx, model.Receive, wire.Ref{Content: []byte("r")}, "verdict", 1)
	forbidden("smtpd sets a verdict", err)
	_, err = smtpd.Batch(ctx, []wire.Request{{Op: wire.OpFindOrInsert, Table: model.POP3, Content: []byte("acct")}})
	forbidden("smtpd batch into pop3", err)
	_, err = admin.Merge(ctx, nil, "", 0)
	forbidden("admin merges", err)
	st, err := pop.Changes(ctx, 0, false, "")
	if err == nil {
		_, err = st.Next(ctx)
		st.Close()
	}
	forbidden("mailbox reads the replication stream", err)
	// dbd keeps serving the same connection after refusals.
	if _, _, err := smtpd.FindOrInsert(ctx, model.Header, []byte("h")); err != nil {
		t.Fatalf("after refusals: %v", err)
	}
	// Each refusal is logged for the operator (test catalogue item 74):
	// a warning naming the role, the client's key and the operation.
	const msg = "request refused by role"
	for _, r := range []struct {
		role auth.Role
		op   string
	}{{auth.SMTPD, "find"}, {auth.SMTPD, "set"}, {auth.SMTPD, "batch"}, {auth.Admin, "merge"}, {auth.Mailbox, "changes"}} {
		want := fmt.Sprintf("role=%s client=%q key_file=", r.role, e.Keys[r.role].Public.String())
		if l := logs.waitLine(t, msg, want, " op="+r.op+" "); !strings.Contains(l, "level=WARN") {
			t.Errorf("refusal logged as %q, want level WARN", l)
		}
	}
	if n := len(logs.lines(msg)); n != 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, strings.Join(logs.lines(msg), "\n"))
	}
}

func TestUnknownClientKeyRefused(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	stranger, _ := wire.GenerateKeyPair(rand.Reader)
	c := e.ClientWithKey(stranger, e.DBKey.Public)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("unlisted client key was served")
	}
}

func TestWrongServerKeyRefused(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	other, _ := wire.GenerateKeyPair(rand.Reader)
	c := e.ClientWithKey(e.Keys[auth.Admin], other.Public)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("client accepted a server with another key than the pinned one")
	}
}

func TestKeyRemovalClosesSessions(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	wc := e.Dial(auth.SMTPD)
	// Rewrite the clients file without smtpd; dbd reloads it and must
	// close the live session of the removed key.
	if err := writeFile(e.Clients, "admin keys/admin.pub\n"); err != nil {
		t.Fatal(err)
	}
	waitClosed(ctx, t, wc, "session of a removed key stayed open")
	if err := e.Client(auth.Admin).Ping(ctx); err != nil {
		t.Fatalf("admin after reload: %v", err)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{Server: server.Config{MaxMessage: 1 << 20}})
	ctx := ctxT(t)
	wc := e.Dial(auth.Admin)
	ask := func(id uint32, msg []byte) (*wire.Result, error) {
		t.Helper()
		for len(msg) > wire.MaxFrameData {
			if err := wc.WriteFrame(wire.Frame{Flags: wire.FlagMore, ReqID: id, Data: msg[:wire.MaxFrameData]}); err != nil {
				t.Fatal(err)
			}
			msg = msg[wire.MaxFrameData:]
		}
		if err := wc.WriteFrame(wire.Frame{ReqID: id, Data: msg}); err != nil {
			t.Fatal(err)
		}
		f, err := wc.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended after bad input: %v", err)
		}
		if f.ReqID != id || f.Flags&wire.FlagMore != 0 {
			t.Fatalf("answer frame %+v", f)
		}
		return wire.DecodeAnswer(wire.OpPing, f.Data)
	}
	code := func(err error) wire.Code {
		var we *wire.Error
		if errors.As(err, &we) {
			return we.Code
		}
		t.Fatalf("err = %v, want a wire.Error", err)
		return 0
	}
	cases := []struct {
		name string
		msg  []byte
		want wire.Code
	}{
		{"empty", nil, wire.CodeBadRequest},
		{"unknown op", []byte{99}, wire.CodeBadRequest},
		{"unknown table", []byte{byte(wire.OpFindOrInsert), 77, 1, 'x'}, wire.CodeBadRequest},
		{"length past end", []byte{byte(wire.OpFindOrInsert), 1, 100, 'x'}, wire.CodeBadRequest},
		{"bad column name", append([]byte{byte(wire.OpSet), 1, 0, 1, 'x', 3}, "A B"...), wire.CodeBadRequest},
		{"oversized", append([]byte{byte(wire.OpFindOrInsert), 1}, make([]byte, 2<<20)...), wire.CodeTooLarge},
	}
	for i, tc := range cases {
		_, err := ask(uint32(i+1), tc.msg)
		if got := code(err); got != tc.want {
			t.Errorf("%s: code %v, want %v", tc.name, got, tc.want)
		}
	}
	ping, _ := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPing})
	if _, err := ask(100, ping); err != nil {
		t.Fatalf("ping after bad input: %v", err)
	}
	if err := e.Client(auth.Admin).Ping(ctx); err != nil {
		t.Fatalf("other clients after bad input: %v", err)
	}
}

func TestSilentClientTimesOut(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{Server: server.Config{HandshakeTimeout: 200 * time.Millisecond}})
	nc, err := net.Dial("tcp", e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("dbd sent data to a client that never handshook")
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("dbd kept a silent client past its handshake timeout")
	}
}

func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close() // never answers
		}
	}()
	kp, _ := wire.GenerateKeyPair(rand.Reader)
	srv, _ := wire.GenerateKeyPair(rand.Reader)
	c, err := client.New(client.Config{Addr: ln.Addr().String(), Static: kp, Server: srv.Public, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping to a silent server succeeded")
	}
}

func TestWatchAndChanges(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin, spam, backup := e.Client(auth.Admin), e.Client(auth.SpamD), e.Client(auth.BackupD)
	rc := []byte("receive-row")
	key := model.KeyOf(model.Receive, rc)
	if _, _, err := admin.FindOrInsert(ctx, model.Receive, rc); err != nil {
		t.Fatal(err)
	}
	w, err := admin.Watch(ctx, model.Receive, []model.Key{key}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if r, err := w.Next(ctx); err != nil || r.Key != key || r.State.Col("verdict") != 0 {
		t.Fatalf("initial watch row = %+v, %v", r, err)
	}
	ch, err := backup.Changes(ctx, 0, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	r, err := ch.Next(ctx)
	if err != nil || r.Key != key || !bytes.Equal(r.Content, rc) {
		t.Fatalf("first change = %+v, %v", r, err)
	}
	if _, err := spam.Set(ctx, model.Receive, wire.Ref{ByKey: true, Key: key}, "verdict", 5); err != nil {
		t.Fatal(err)
	}
	if r, err := w.Next(ctx); err != nil || r.State.Col("verdict") != 5 {
		t.Fatalf("watch after set = %+v, %v", r, err)
	}
	r2, err := ch.Next(ctx)
	if err != nil || r2.Key != key || r2.Stamp <= r.Stamp || r2.State.Col("verdict") != 5 {
		t.Fatalf("pushed change = %+v, %v", r2, err)
	}
	if _, err := backup.Merge(ctx, []wire.Row{{Table: model.Text, Key: model.KeyOf(model.Text, []byte("t")), HasContent: true, Content: []byte("t")}}, "from-x", r2.Stamp); err != nil {
		t.Fatal(err)
	}
	if v, err := backup.Cursor(ctx, "from-x"); err != nil || v != r2.Stamp {
		t.Fatalf("cursor = %d, %v", v, err)
	}
	// A merge whose frames cut across rows and contents (sent from the
	// rows' own slices) arrives whole.
	var rows []wire.Row
	for _, n := range []int{70000, 1, 0, 200000, 65514, 3} {
		c := bytes.Repeat([]byte{byte(n)}, n)
		c = append(c, fmt.Sprint(n)...)
		rows = append(rows, wire.Row{Table: model.Body, Key: model.KeyOf(model.Body, c), HasContent: true, Content: c})
	}
	if _, err := backup.Merge(ctx, rows, "", 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		got, err := backup.FindKey(ctx, model.Body, r.Key)
		if err != nil || !bytes.Equal(got.Content, r.Content) {
			t.Fatalf("merged row of %d bytes: %v", len(r.Content), err)
		}
	}
	bad := wire.Row{Table: model.Text, Key: model.KeyOf(model.Text, []byte("x")), HasContent: true, Content: []byte("not x")}
	if _, err := backup.Merge(ctx, []wire.Row{bad}, "", 0); err == nil {
		t.Fatal("merge of a row whose key does not match its content was accepted")
	}
}

// TestWatchWhere: a watch with a condition gets only the events of rows
// whose new state meets it, as a filter (new rows: without verdict) and
// smtpd (verdicts: with verdict, without ack) watch the receive table.
func TestWatchWhere(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin := e.Client(auth.Admin)
	filter, err := admin.WatchWhere(ctx, model.Receive, wire.WatchCond{Without: model.ColVerdict})
	if err != nil {
		t.Fatal(err)
	}
	defer filter.Close()
	waiter, err := admin.WatchWhere(ctx, model.Receive, wire.WatchCond{With: model.ColVerdict, Without: model.ColAcknowledged})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	set := func(k model.Key, col string) {
		t.Helper()
		if _, err := admin.Set(ctx, model.Receive, wire.Ref{ByKey: true, Key: k}, col, 1); err != nil {
			t.Fatal(err)
		}
	}
	var keys []model.Key
	for _, c := range []string{"r1", "r2"} {
		if _, _, err := admin.FindOrInsert(ctx, model.Receive, []byte(c)); err != nil {
			t.Fatal(err)
		}
		k := model.KeyOf(model.Receive, []byte(c))
		keys = append(keys, k)
		set(k, model.ColVerdict)
		set(k, model.ColAcknowledged)
	}
	// The filter sees the inserts only; the waiter the verdicts only.
	for _, k := range keys {
		if r, err := filter.Next(ctx); err != nil || r.Key != k || r.State.Col(model.ColVerdict) != 0 {
			t.Fatalf("filter's event = %+v, %v; want the insert of %s", r, err, k)
		}
		if r, err := waiter.Next(ctx); err != nil || r.Key != k || r.State.Col(model.ColVerdict) != 1 || r.State.Col(model.ColAcknowledged) != 0 {
			t.Fatalf("waiter's event = %+v, %v; want the verdict of %s", r, err, k)
		}
	}
	// Nothing else is queued: a last insert is the next event of each.
	if _, _, err := admin.FindOrInsert(ctx, model.Receive, []byte("r3")); err != nil {
		t.Fatal(err)
	}
	k3 := model.KeyOf(model.Receive, []byte("r3"))
	if r, err := filter.Next(ctx); err != nil || r.Key != k3 {
		t.Fatalf("filter's event = %+v, %v; want the insert of r3", r, err)
	}
	set(k3, model.ColVerdict)
	if r, err := waiter.Next(ctx); err != nil || r.Key != k3 {
		t.Fatalf("waiter's event = %+v, %v; want the verdict of r3", r, err)
	}
}

func TestLargeContent(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	c := e.Client(auth.Admin)
	big := make([]byte, 5<<20)
	rand.Read(big)
	if _, _, err := c.FindOrInsert(ctx, model.Body, big); err != nil {
		t.Fatal(err)
	}
	row, err := c.Find(ctx, model.Body, big)
	if err != nil || !bytes.Equal(row.Content, big) {
		t.Fatalf("5 MiB round trip: err %v, equal %v", err, err == nil && bytes.Equal(row.Content, big))
	}
}

// TestChangesExcludeOrigin: rows whose state came from a merge under
// cursor X, exactly as sent, come without content in a changes stream that
// excludes X — but with content again once changed here, or when the merge
// combined our state with theirs.
func TestChangesExcludeOrigin(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	backup, admin := e.Client(auth.BackupD), e.Client(auth.Admin)
	echo := []byte("from the other site")
	mixed := []byte("ours and theirs")
	if _, _, err := admin.FindOrInsert(ctx, model.Text, mixed); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Set(ctx, model.Text, wire.Ref{Content: mixed}, "ours", 1); err != nil {
		t.Fatal(err)
	}
	theirs := model.State{Cols: map[string]uint64{"theirs": 1}}
	if _, err := backup.Merge(ctx, []wire.Row{
		{Table: model.Text, Key: model.KeyOf(model.Text, echo), HasContent: true, Content: echo, State: theirs},
		{Table: model.Text, Key: model.KeyOf(model.Text, mixed), HasContent: true, Content: mixed, State: theirs},
	}, "repl.b-to-a", 5); err != nil {
		t.Fatal(err)
	}
	changes := func(exclude string) map[string]bool {
		st, err := backup.Changes(ctx, 0, false, exclude)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		got := map[string]bool{}
		for {
			r, err := st.Next(ctx)
			if errors.Is(err, io.EOF) {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Key == model.KeyOf(model.Text, echo) {
				got["echo"] = r.HasContent
			} else {
				got["mixed"] = r.HasContent
			}
		}
	}
	if got := changes(""); !got["echo"] || !got["mixed"] {
		t.Fatalf("without exclude: %v, want content for both", got)
	}
	if got := changes("repl.b-to-a"); got["echo"] || !got["mixed"] {
		t.Fatalf("excluding the origin: %v, want content only for the combined row", got)
	}
	if got := changes("repl.c-to-a"); !got["echo"] {
		t.Fatalf("excluding another cursor: %v", got)
	}
	if _, err := admin.Set(ctx, model.Text, wire.Ref{Content: echo}, "local", 1); err != nil {
		t.Fatal(err)
	}
	if got := changes("repl.b-to-a"); !got["echo"] {
		t.Fatalf("after a local change: %v, want content", got)
	}
}

// TestListAndWatchChildren: the mailbox role lists one mailbox's receive
// rows over the wire, pages through them and watches them by parent;
// other tables have no parent index.
func TestListAndWatchChildren(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin, pop := e.Client(auth.Admin), e.Client(auth.Mailbox)
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("u@x.example"))
	other := model.KeyOf(model.Mailbox, model.MailboxContent("v@x.example"))
	w, err := pop.WatchChildren(ctx, model.Receive, mb)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var want []model.Key
	for i := range 5 {
		m := model.KeyOf(model.Mail, []byte{byte(i)})
		for _, box := range []model.Key{mb, other} {
			c := model.ReceiveContent(m, box)
			if _, _, err := admin.FindOrInsert(ctx, model.Receive, c); err != nil {
				t.Fatal(err)
			}
			if box == mb {
				want = append(want, model.KeyOf(model.Receive, c))
			}
		}
	}
	var got []model.Key
	var after uint64
	for {
		rows, err := pop.List(ctx, model.Receive, mb, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			if _, box, err := model.ParseReceiveContent(r.Content); err != nil || box != mb {
				t.Fatalf("listed row %s has content %x, want a receive row of the mailbox", r.Key, r.Content)
			}
			got = append(got, r.Key)
			after = r.RowNo
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v in arrival order", got, want)
	}
	for i := range want {
		r, err := w.Next(ctx)
		if err != nil || r.Key != want[i] {
			t.Fatalf("watch event %d = %+v, %v; want row %s", i, r, err, want[i])
		}
	}
	_, err = pop.List(ctx, model.Mail, mb, 0, 10)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeBadRequest {
		t.Fatalf("list mail rows = %v, want bad-request (no parent index)", err)
	}
}

// putMail stores raw in mailbox box as smtpd does, acknowledged, and
// returns its receive row's key.
func putMail(t *testing.T, ctx context.Context, admin *client.Client, box model.Key, raw string) model.Key {
	t.Helper()
	rows := model.NewMailRows([]byte(raw))
	rc := model.ReceiveContent(rows.MailKey, box)
	if _, err := admin.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
		{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{Content: rc}, Name: model.ReceivedColumn(rows.ReceivedKey), Value: 1},
	}); err != nil {
		t.Fatal(err)
	}
	return model.KeyOf(model.Receive, rc)
}

// joinMailRows returns the tables of an op mail answer's rows and the mail
// they make.
func joinMailRows(rows []wire.Row) (tables string, raw []byte, err error) {
	var names []string
	var p model.Parts
	for _, r := range rows {
		names = append(names, r.Table.String())
		switch r.Table {
		case model.Header:
			p.Header = r.Content
		case model.Body:
			p.Body = r.Content
		case model.Received:
			p.Received = r.Content
		}
	}
	raw, err = model.Join(p)
	return fmt.Sprint(names), raw, err
}

// TestMailRows: op mail answers the rows that make a mail in one stream —
// receive, mail, header, body and the acknowledged received row — to a role
// that may read them all, not-found for a missing receive row, and
// forbidden to smtpd (which may not read mail).
func TestMailRows(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin, pop, smtpd := e.Client(auth.Admin), e.Client(auth.Mailbox), e.Client(auth.SMTPD)
	const raw = "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"
	k := putMail(t, ctx, admin, model.KeyOf(model.Mailbox, model.MailboxContent("u@x.example")), raw)
	got, err := pop.MailRows(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	tables, joined, err := joinMailRows(got)
	if tables != "[receive mail header body received]" {
		t.Fatalf("mail rows of tables %v", tables)
	}
	if err != nil || string(joined) != raw {
		t.Fatalf("joined %q, %v", joined, err)
	}
	if _, err := pop.MailRows(ctx, model.KeyOf(model.Receive, []byte("none"))); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("mail of a missing receive row: %v, want ErrNotFound", err)
	}
	_, err = smtpd.MailRows(ctx, k)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Fatalf("smtpd reading a mail: %v, want forbidden", err)
	}
}

// putMails stores n mails (subject i, then body) in one mailbox and
// returns their receive keys and bytes. All are as long as each other.
func putMails(t *testing.T, ctx context.Context, admin *client.Client, n int, body string) ([]model.Key, []string) {
	t.Helper()
	box := model.KeyOf(model.Mailbox, model.MailboxContent("u@x.example"))
	var keys []model.Key
	var raws []string
	for i := range n {
		raw := fmt.Sprintf("Received: from x\r\nSubject: %d\r\n\r\n%s\r\n", i, body)
		keys = append(keys, putMail(t, ctx, admin, box, raw))
		raws = append(raws, raw)
	}
	return keys, raws
}

// TestMailsRows: op mails answers, for several receive keys, each mail's
// rows starting with its receive row, skips missing keys, and is
// forbidden to smtpd like op mail.
func TestMailsRows(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin, pop, smtpd := e.Client(auth.Admin), e.Client(auth.Mailbox), e.Client(auth.SMTPD)
	keys, raws := putMails(t, ctx, admin, 3, "body")
	for _, raw := range raws {
		hk := model.NewMailRows([]byte(raw)).HeaderKey
		if _, err := admin.Set(ctx, model.Header, wire.Ref{ByKey: true, Key: hk}, "seen", 9); err != nil {
			t.Fatal(err)
		}
	}
	want := map[model.Key]string{}
	for i, k := range keys {
		want[k] = raws[i]
	}
	missing := model.KeyOf(model.Receive, []byte("none"))
	got, err := pop.MailsRows(ctx, []model.Key{keys[2], missing, keys[0], keys[1]}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d mails, want 3 (the missing key left out)", len(got))
	}
	for k, raw := range want {
		tables, joined, err := joinMailRows(got[k])
		if tables != "[receive mail header body received]" {
			t.Fatalf("mail rows of tables %v", tables)
		}
		if err != nil || string(joined) != raw {
			t.Fatalf("joined %q, %v; want %q", joined, err, raw)
		}
		// The states come as stored (dbd passes them on encoded): the
		// receive row's link, a column set here.
		for _, r := range got[k] {
			meta, err := admin.FindMeta(ctx, r.Table, r.Key)
			if err != nil || !r.State.Equal(meta.State) {
				t.Fatalf("%s row's state %v in mails, %v by find (%v)", r.Table, r.State, meta.State, err)
			}
			if _, ok := model.MailReceived(r.State); r.Table == model.Receive && !ok {
				t.Fatalf("receive row without its link to the received row: %v", r.State)
			}
			if r.Table == model.Header && r.State.Col("seen") != 9 {
				t.Fatalf("header row's state %v, want seen 9", r.State)
			}
		}
	}
	_, err = smtpd.MailsRows(ctx, keys, 0)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeForbidden {
		t.Fatalf("smtpd reading mails: %v, want forbidden", err)
	}
}

// TestMailsBudget: with a byte budget, op mails stops after the mail whose
// contents reach it, and always answers the first mail it finds, however
// large, so a reader that asks again for the rest makes progress.
func TestMailsBudget(t *testing.T) {
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx := ctxT(t)
	admin, pop := e.Client(auth.Admin), e.Client(auth.Mailbox)
	keys, _ := putMails(t, ctx, admin, 4, strings.Repeat("b", 1000))
	var size uint64 // contents of one mail's rows (all mails are as long)
	all, err := pop.MailsRows(ctx, keys[:1], 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all[keys[0]] {
		size += r.Size
	}
	missing := model.KeyOf(model.Receive, []byte("none"))
	for _, tc := range []struct {
		name   string
		keys   []model.Key
		budget uint64
		want   []model.Key
	}{
		{"budget of one byte", keys, 1, keys[:1]},
		{"budget of exactly two mails", keys, 2 * size, keys[:2]},
		{"budget a byte over two mails", keys, 2*size + 1, keys[:3]},
		{"budget over all", keys, 100 * size, keys},
		{"missing key first", []model.Key{missing, keys[3], keys[2]}, 1, keys[3:4]},
	} {
		got, err := pop.MailsRows(ctx, tc.keys, tc.budget)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d mails, want %d", tc.name, len(got), len(tc.want))
		}
		for _, k := range tc.want {
			if _, ok := got[k]; !ok {
				t.Fatalf("%s: mail %s missing from the answer", tc.name, k)
			}
		}
	}
}
