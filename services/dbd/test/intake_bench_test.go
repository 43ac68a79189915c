package test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// BenchmarkMailIntake replays against a dbd process what one mail
// received over SMTP asks of it, as under Postfix's smtp-source in
// smtp-bench.sh (single site): 20 sessions at once, each storing a mail
// in one batch (header, body, mail, received, msgid, receive and
// throw-in rows; the body of 10 kB the same for every mail, as
// smtp-source sends it), waiting on a shared watch of the receive table
// for the verdict that a stand-in filter (a watch of the rows without
// one, its sets batched, as dbctl autoverdict) writes, then acknowledging
// (three columns of the receive row, two of the throw-in row); the
// sessions' transcripts (11 kB capture rows) are stored in batches of up
// to 64, as smtpd's recorder does. dbd-cpu-µs/op is dbd's CPU time per
// mail (/proc), the figure smtp-bench.sh reports for dbd.
// TWINMX_INTAKE_BODIES=distinct gives every mail its own body.
func BenchmarkMailIntake(b *testing.B) {
	const sessions = 20
	d := proctest.NewDB(b, proctest.DBConfig{Bin: binDir, Keys: map[string]string{"smtpd": "smtpd"}})
	d.Start()
	ctx := context.Background()
	cl := d.Client()
	mailbox := model.KeyOf(model.Mailbox, model.MailboxContent("bench@twinmx.test"))
	if _, err := cl.Batch(ctx, []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: model.MailboxContent("bench@twinmx.test")}}); err != nil {
		b.Fatal(err)
	}
	distinct := os.Getenv("TWINMX_INTAKE_BODIES") == "distinct"
	wctx, stop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { stop(); bg.Wait() }()

	// The stand-in filter.
	// One connection for the filter (its watch and sets), one for smtpd
	// (sessions, watch and recorder), as in smtp-bench.sh.
	fcl, scl := d.Client(), d.NewClient("smtpd")
	fst, err := fcl.WatchWhere(wctx, model.Receive, wire.WatchCond{Without: model.ColVerdict})
	if err != nil {
		b.Fatal(err)
	}
	undecided := make(chan model.Key, 4096)
	bg.Add(2)
	go func() {
		defer bg.Done()
		defer close(undecided)
		for {
			row, err := fst.Next(wctx)
			if err != nil {
				return
			}
			undecided <- row.Key
		}
	}()
	go func() {
		defer bg.Done()
		val := model.EncodeVerdict(model.SourceFilter, model.Epoch(time.Now()), model.Accept)
		for k := range undecided {
			reqs := []wire.Request{{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: model.ColVerdict, Value: val}}
		more:
			for len(reqs) < wire.MaxBatchOps {
				select {
				case k, ok := <-undecided:
					if !ok {
						break more
					}
					reqs = append(reqs, wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: wire.Ref{ByKey: true, Key: k}, Name: model.ColVerdict, Value: val})
				default:
					break more
				}
			}
			if _, err := fcl.Batch(wctx, reqs); err != nil {
				return
			}
		}
	}()

	// smtpd's shared watch of decided receive rows.
	var mu sync.Mutex
	waiters := map[model.Key]chan struct{}{}
	decided := map[model.Key]bool{}
	wst, err := scl.WatchWhere(wctx, model.Receive, wire.WatchCond{With: model.ColVerdict})
	if err != nil {
		b.Fatal(err)
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			row, err := wst.Next(wctx)
			if err != nil {
				return
			}
			mu.Lock()
			if ch, ok := waiters[row.Key]; ok {
				close(ch)
				delete(waiters, row.Key)
			} else {
				decided[row.Key] = true
			}
			mu.Unlock()
		}
	}()

	// smtpd's recorder: transcripts in batches of up to 64.
	captures := make(chan []byte, 1024)
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		for c := range captures {
			reqs := []wire.Request{{Op: wire.OpFindOrInsert, Table: model.Capture, Content: c}}
		more:
			for len(reqs) < 64 {
				select {
				case c, ok := <-captures:
					if !ok {
						break more
					}
					reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Capture, Content: c})
				default:
					break more
				}
			}
			if _, err := scl.Batch(ctx, reqs); err != nil {
				panic(err)
			}
		}
	}()

	body := randomBytes(10240)
	var seq atomic.Uint64
	tag := randomBytes(8)
	pid := d.Cmd.Process.Pid
	cpu := func() time.Duration {
		c, err := proctest.CPUTime(pid)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	mail := func() error {
		n := seq.Add(1)
		c := func(size int, kind string) []byte {
			v := fmt.Appendf(nil, "%s %x %d ", kind, tag, n)
			for len(v) < size {
				v = binary.BigEndian.AppendUint64(v, n*uint64(len(v)))
			}
			return v[:size]
		}
		bd := body
		if distinct {
			bd = append(c(16, "body"), body[16:]...)
		}
		header, received, msgid := c(700, "header"), c(200, "received"), c(40, "msgid")
		mk := model.KeyOf(model.Mail, c(64, "mail"))
		mailRow := c(64, "mail")
		recv := model.ReceiveContent(mk, mailbox)
		rk := model.KeyOf(model.Receive, recv)
		throw := c(300, "throw-in")
		tk := model.KeyOf(model.ThrowIn, throw)
		ch := make(chan struct{})
		mu.Lock()
		if decided[rk] {
			close(ch)
			delete(decided, rk)
		} else {
			waiters[rk] = ch
		}
		mu.Unlock()
		ins := func(t model.Table, c []byte) wire.Request {
			return wire.Request{Op: wire.OpFindOrInsert, Table: t, Content: c}
		}
		if _, err := scl.Batch(ctx, []wire.Request{ins(model.Header, header), ins(model.Body, bd), ins(model.Mail, mailRow),
			ins(model.Received, received), ins(model.MsgID, msgid), ins(model.Receive, recv), ins(model.ThrowIn, throw)}); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			return fmt.Errorf("no verdict for mail %d", n)
		}
		rref, tref := wire.Ref{ByKey: true, Key: rk}, wire.Ref{ByKey: true, Key: tk}
		set := func(t model.Table, ref wire.Ref, col string, v uint64) wire.Request {
			return wire.Request{Op: wire.OpSet, Table: t, Ref: ref, Name: col, Value: v}
		}
		if _, err := scl.Batch(ctx, []wire.Request{set(model.Receive, rref, model.ColAcknowledged, model.FlagSet),
			set(model.Receive, rref, model.ReceivedColumn(model.KeyOf(model.Received, received)), uint64(time.Now().UnixMilli())),
			set(model.Receive, rref, model.POP3SizeColumn(model.KeyOf(model.Received, received)), 11000),
			set(model.ThrowIn, tref, "reply", 250), set(model.ThrowIn, tref, "decide.ms", 3)}); err != nil {
			return err
		}
		captures <- c(11000, "capture")
		return nil
	}
	run := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		errs := make(chan error, sessions)
		for range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					if err := mail(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	run(200) // warm up
	b.ResetTimer()
	start := cpu()
	run(b.N)
	close(captures)
	<-recDone
	used := cpu() - start
	b.StopTimer()
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "dbd-cpu-µs/op")
}
