package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// BenchmarkTransaction: one SMTP transaction of a distinct 10 kB mail per
// connection (as smtp-source sends), into an in-process smtpd (degraded
// mode, one copy) and dbd, with every verdict written before the mail
// arrives, so that the figure is smtpd's and dbd's work rather than a
// filter's. Client, smtpd and dbd share the machine; use -cpuprofile
// and -memprofile with a focus on smtpd's packages to see its share.
func BenchmarkTransaction(b *testing.B) {
	e := start(b, func(c *Config) { c.MinCopies = 1 })
	const rcpt = "bench@twinmx.test"
	e.mailbox(rcpt, 0)
	mail := func(i int) []byte {
		line := strings.Repeat(fmt.Sprintf("%08d ", i), 8) + "\r\n"
		return []byte(fmt.Sprintf("From: a@s.test\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <%d.%d@s.test>\r\n\r\n%s",
			rcpt, i, b.N, i, strings.Repeat(line, 10240/len(line))))
	}
	ctx := context.Background()
	mb := model.KeyOf(model.Mailbox, model.MailboxContent(rcpt))
	val := model.EncodeVerdict(model.SourceFilter, 1, model.Accept)
	var reqs []wire.Request
	for i := range b.N {
		c := model.ReceiveContent(model.NewMailRows(mail(i)).MailKey, mb)
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Receive, Content: c},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{Content: c}, Name: model.ColVerdict, Value: val})
		if len(reqs) >= 200 || i == b.N-1 {
			if _, err := e.admin.Batch(ctx, reqs); err != nil {
				b.Fatal(err)
			}
			reqs = reqs[:0]
		}
	}
	mails := make([][]byte, b.N)
	for i := range mails {
		mails[i] = mail(i)
	}
	b.SetBytes(int64(len(mails[0])))
	b.ResetTimer()
	for i := range b.N {
		if code, msg := e.send("a@s.test", []string{rcpt}, mails[i]); code != 250 {
			b.Fatalf("mail %d: %d %s", i, code, msg)
		}
	}
}
