package test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// TestRecoverAcks drives `dbctl recover-acks` against mails stored the way
// smtpd stores them (rows, throw-in naming mail and received row) in every
// state that matters: only an accepted, unacknowledged, undeleted mail
// with a recent delivery attempt is acknowledged, linked to the received
// row of its newest attempt; without --apply nothing changes.
func TestRecoverAcks(t *testing.T) {
	s := newSite(t)
	s.Start()
	s.Dbctl(nil, "mailbox", "add", "jo@example.org")
	kp, err := wire.LoadKeyPair(filepath.Join(s.Dir, "keys", "smtpd"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Config{Addr: s.Addr, Static: kp, Server: s.Pub})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	admin := s.NewClient("admin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mb := model.KeyOf(model.Mailbox, model.MailboxContent("jo@example.org"))
	now := time.Now()
	accept := model.EncodeVerdict(model.SourceFilter, model.Epoch(now), model.Accept)
	reject := model.EncodeVerdict(model.SourceFilter, model.Epoch(now), model.Reject)

	type mail struct {
		name      string
		verdict   uint64
		ack, del  bool
		attemptAt time.Time // zero: no throw-in
		want      bool      // acknowledged by recover-acks --apply
		rk, rcvd  model.Key
	}
	mails := []*mail{
		{name: "orphan", verdict: accept, attemptAt: now.Add(-time.Minute), want: true},
		{name: "orphan-two-attempts", verdict: accept, attemptAt: now.Add(-2 * time.Minute), want: true},
		{name: "acknowledged", verdict: accept, ack: true, attemptAt: now.Add(-time.Minute)},
		{name: "rejected", verdict: reject, attemptAt: now.Add(-time.Minute)},
		{name: "undecided", attemptAt: now.Add(-time.Minute)},
		{name: "deleted", verdict: accept, del: true, attemptAt: now.Add(-time.Minute)},
		{name: "no-attempt", verdict: accept},
		{name: "old-attempt", verdict: accept, attemptAt: now.Add(-48 * time.Hour)},
	}
	for i, m := range mails {
		raw := []byte(fmt.Sprintf("From: ann@x.example\r\nSubject: %s\r\n\r\nmail %d\r\n", m.name, i))
		rows := model.NewMailRows(raw)
		parts, err := rows.Parts.WithTrace([]byte(fmt.Sprintf("Received: from a by mx-a (twinmx) id s%d.1; %s\r\n", i, now.Format(time.RFC1123Z))))
		if err != nil {
			t.Fatal(err)
		}
		recv := model.ReceiveContent(rows.MailKey, mb)
		m.rk, m.rcvd = model.KeyOf(model.Receive, recv), model.KeyOf(model.Received, parts.Received)
		reqs := []wire.Request{
			{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
			{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
			{Op: wire.OpFindOrInsert, Table: model.Received, Content: parts.Received},
			{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
			{Op: wire.OpFindOrInsert, Table: model.Receive, Content: recv},
		}
		attempt := func(at time.Time, n int, received model.Key) {
			reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.ThrowIn, Content: model.Attempt{
				Session: fmt.Sprintf("s%d", i), Attempt: n, Time: at, Client: "192.0.2.1:25", From: "ann@x.example",
				Rcpts: []string{"jo@example.org"}, Size: len(raw), Mail: rows.MailKey, HasMail: true,
				Received: received, HasReceived: true}.Content()})
		}
		switch {
		case m.name == "orphan-two-attempts":
			attempt(m.attemptAt, 1, model.KeyOf(model.Received, []byte("an older attempt's")))
			attempt(m.attemptAt.Add(time.Minute), 2, m.rcvd) // the newest names the row to link
		case !m.attemptAt.IsZero():
			attempt(m.attemptAt, 1, m.rcvd)
		}
		if _, err := cl.Batch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
		ref := wire.Ref{ByKey: true, Key: m.rk}
		var sets []wire.Request
		if m.verdict != 0 {
			sets = append(sets, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColVerdict, Value: m.verdict})
		}
		if m.ack {
			sets = append(sets, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet})
		}
		if m.del {
			sets = append(sets, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColDeleted, Value: model.FlagSet})
		}
		if len(sets) > 0 {
			if _, err := admin.Batch(ctx, sets); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func(m *mail) model.State {
		row, err := admin.FindKey(ctx, model.Receive, m.rk)
		if err != nil {
			t.Fatal(err)
		}
		return row.State
	}

	out := s.Dbctl(nil, "recover-acks")
	if !strings.Contains(out, "recover-acks: 2 accepted without ack, 0 acknowledged now, 1 with an attempt but no verdict yet") {
		t.Fatalf("recover-acks (listing):\n%s", out)
	}
	for _, m := range mails {
		if listed := strings.Contains(out, m.rk.String()); listed != m.want {
			t.Errorf("%s: listed %v, want %v", m.name, listed, m.want)
		}
		if m.want && state(m).Cols[model.ColAcknowledged] != 0 {
			t.Errorf("%s: acknowledged without --apply", m.name)
		}
	}
	out = s.Dbctl(nil, "recover-acks", "--apply")
	if !strings.Contains(out, "recover-acks: 2 accepted without ack, 2 acknowledged now") {
		t.Fatalf("recover-acks --apply:\n%s", out)
	}
	for _, m := range mails {
		st := state(m)
		acked := st.Cols[model.ColAcknowledged] == model.FlagSet
		if acked != (m.want || m.ack) {
			t.Errorf("%s: acknowledged %v after --apply", m.name, acked)
		}
		if m.want {
			if k, ok := model.AcknowledgedReceived(st); !ok || k != m.rcvd {
				t.Errorf("%s: linked to received row %v (%v), want the newest attempt's %s", m.name, k, ok, m.rcvd)
			}
		}
	}
	if out := s.Dbctl(nil, "recover-acks", "--apply"); !strings.Contains(out, "recover-acks: 0 accepted without ack, 0 acknowledged now") {
		t.Errorf("a second run found more:\n%s", out)
	}
	if _, _, code := s.DbctlExit(nil, "recover-acks", "--since", "0s"); code != 2 {
		t.Errorf("--since 0: exit %d, want 2", code)
	}
}
