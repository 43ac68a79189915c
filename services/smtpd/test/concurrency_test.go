package test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// TestManySessionsAwaitDecision: 100 sessions wait for their decision at
// the same time (a busy MX with a slow spam filter); once the verdicts come,
// every one gets 250. smtpd must not run out of anything per waiting
// session (dbd allows 64 open streams per connection; smtpd once opened a
// watch per waiting session, and the 65th got 451 4.3.0).
func TestManySessionsAwaitDecision(t *testing.T) {
	t.Parallel()
	const n = 100
	s := newSite(t)
	s.Start()
	rcpt := "busy@twinmx.test"
	s.addMailbox(rcpt)
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 30 * time.Second, MinCopies: 1,
		Extra: []string{"--max-conns-per-ip", "-1"}})
	token := time.Now().UnixNano()
	mails := make([][]byte, n)
	for i := range mails {
		mails[i] = []byte(fmt.Sprintf("From: a@sender.test\r\nSubject: busy %d %d\r\n\r\nmail %d\r\n", token, i, i))
	}
	replies := make([]string, n)
	var wg sync.WaitGroup
	for i := range mails {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := sendMail(d.addr, "a@sender.test", []string{rcpt}, mails[i], 60*time.Second)
			replies[i] = fmt.Sprintf("%d %s", r.Code, strings.SplitN(r.Text, " ", 2)[0])
			if err != nil {
				replies[i] = err.Error()
			}
		}(i)
	}
	// Decide only once every mail is stored, so all sessions wait at once.
	ctx := proctest.Ctx(t, time.Minute)
	keys := make([]model.Key, n)
	for i := range mails {
		keys[i] = receiveKey(mails[i], rcpt)
	}
	waitFor(t, 30*time.Second, "all mails stored", func() bool {
		for _, k := range keys {
			if st, err := s.receiveRow(ctx, k); err != nil || st == nil {
				return false
			}
		}
		return true
	})
	val := model.EncodeVerdict(model.SourceFilter, model.Epoch(time.Now()), model.Accept)
	reqs := make([]wire.Request, n)
	for i, k := range keys {
		reqs[i] = wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: model.ColVerdict, Value: val}
	}
	if _, err := s.Client().Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	count := map[string]int{}
	for _, r := range replies {
		count[r]++
	}
	if count["250 2.0.0"] != n {
		var cs []string
		for r, c := range count {
			cs = append(cs, fmt.Sprintf("%q ×%d", r, c))
		}
		sort.Strings(cs)
		t.Errorf("%d sessions waiting for their decision at once: replies %s; want 250 for all", n, strings.Join(cs, ", "))
	}
}
