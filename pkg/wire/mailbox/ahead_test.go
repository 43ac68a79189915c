package mailbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// mailsDB answers op mails as dbd does: keys in order, a missing key adds
// nothing, and a budget stops the answer after the mail that reaches it.
// It records the largest answer and the requests made, and can fail.
type mailsDB struct {
	DB
	mu       sync.Mutex
	mails    map[model.Key][]byte
	requests int
	maxBytes uint64 // the largest answer's contents
	fail     error
	block    chan struct{} // if set, each request waits for it or ctx
	waiting  int           // requests waiting for block
}

// requestCount returns the requests made so far.
func (d *mailsDB) requestCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests
}

func (d *mailsDB) MailsRows(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, error) {
	return d.mailsRows(ctx, keys, budget, false)
}

// mailsRows is MailsRows that, with noBody, sends body rows without their
// contents and does not count them towards the budget (wire.MailsNoBody).
func (d *mailsDB) mailsRows(ctx context.Context, keys []model.Key, budget uint64, noBody bool) (map[model.Key][]wire.Row, error) {
	if d.block != nil {
		d.mu.Lock()
		d.waiting++
		d.mu.Unlock()
		select {
		case <-d.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	if d.fail != nil {
		return nil, d.fail
	}
	out := map[model.Key][]wire.Row{}
	var n uint64
	for _, k := range keys {
		raw, ok := d.mails[k]
		if !ok {
			continue
		}
		rows := mailRowsOf(k, raw)
		out[k] = rows
		for i, r := range rows {
			if noBody && r.Table == model.Body {
				rows[i].HasContent, rows[i].Content = false, nil
				continue
			}
			n += r.Size
		}
		if budget > 0 && n >= budget {
			break
		}
	}
	d.maxBytes = max(d.maxBytes, n)
	return out, nil
}

// mailRowsOf is what dbd answers for raw's receive row k: the receive,
// mail, header and body rows, and a received row if raw has Received
// fields.
func mailRowsOf(k model.Key, raw []byte) []wire.Row {
	r := model.NewMailRows(raw)
	p := r.Parts
	rows := []wire.Row{{Table: model.Receive, Key: k, HasContent: true}, {Table: model.Mail, Key: r.MailKey, Content: r.Mail, HasContent: true},
		{Table: model.Header, Key: r.HeaderKey, Content: p.Header, Size: uint64(len(p.Header)), HasContent: true},
		{Table: model.Body, Key: r.BodyKey, Content: p.Body, Size: uint64(len(p.Body)), HasContent: true}}
	if len(p.Received) > 0 {
		rows = append(rows, wire.Row{Table: model.Received, Key: r.ReceivedKey, Content: p.Received, Size: uint64(len(p.Received)), HasContent: true})
	}
	return rows
}

// TestReadAheadOrigin: each mail comes with the rows it was joined from:
// its mail row and its received row, or none when it has no Received
// fields (the cache in imapd keys what it derives by them).
func TestReadAheadOrigin(t *testing.T) {
	db, msgs, raws := aheadMails(5, 100)
	plain := []byte("Subject: no trace\r\n\r\nbody\r\n")
	k := model.KeyOf(model.Receive, plain)
	db.mails[k] = plain
	msgs, raws = append(msgs, Message{Receive: k}), append(raws, plain)
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 1<<20, time.Minute)
	defer a.Stop()
	for i := range msgs {
		raw, o, err := a.NextOrigin()
		if err != nil || string(raw) != string(raws[i]) {
			t.Fatalf("mail %d: %q, %v", i, raw, err)
		}
		r := model.NewMailRows(raws[i])
		want := Origin{Mail: r.MailKey}
		if len(r.Received) > 0 {
			want.Received = r.ReceivedKey
		}
		if o != want {
			t.Errorf("mail %d: origin %v, want %v", i, o, want)
		}
	}
}

// aheadMails makes n mails of about size bytes each (mail i has i in its
// subject), and leaves the mails at the missing indexes out of db.
func aheadMails(n, size int, missing ...int) (*mailsDB, []Message, [][]byte) {
	db := &mailsDB{mails: map[model.Key][]byte{}}
	var msgs []Message
	var raws [][]byte
	for i := range n {
		raw := []byte(fmt.Sprintf("Received: from x\r\nSubject: %d\r\n\r\n%s\r\n", i, strings.Repeat("b", size)))
		k := model.KeyOf(model.Receive, raw)
		msgs = append(msgs, Message{Receive: k})
		raws = append(raws, raw)
		skip := false
		for _, m := range missing {
			skip = skip || m == i
		}
		if !skip {
			db.mails[k] = raw
		}
	}
	return db, msgs, raws
}

// TestReadAheadOrderAndBound: mails come back in order; no answer is
// much larger than the limit (one mail at most over it), a request asks
// for more than one mail, and Stop in the middle ends the reader.
func TestReadAheadOrderAndBound(t *testing.T) {
	const size, limit = 1000, 10_000
	db, msgs, raws := aheadMails(200, size)
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), limit, time.Minute)
	for i := range 150 {
		raw, err := a.Next()
		if err != nil || string(raw) != string(raws[i]) {
			t.Fatalf("mail %d = %.30q, %v", i, raw, err)
		}
	}
	a.Stop()
	if _, err := a.Next(); !errors.Is(err, ErrAheadStopped) {
		t.Fatalf("Next after Stop: %v", err)
	}
	if db.maxBytes > limit+size+100 {
		t.Fatalf("an answer of %d bytes, limit %d", db.maxBytes, limit)
	}
	if n := db.requestCount(); n > 150/2+2 {
		t.Fatalf("%d requests for 150 mails: not batched", n)
	}
}

// TestReadAheadLargeMail: a mail larger than the limit still comes, whole.
func TestReadAheadLargeMail(t *testing.T) {
	db, msgs, raws := aheadMails(3, 50_000)
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 1000, time.Minute)
	defer a.Stop()
	for i := range 3 {
		if raw, err := a.Next(); err != nil || len(raw) != len(raws[i]) {
			t.Fatalf("mail %d: %d bytes, %v", i, len(raw), err)
		}
	}
}

// TestReadAheadMissing: a mail gone from dbd is not-found in its place,
// whether it is cut by the budget's end or not, and the others come.
func TestReadAheadMissing(t *testing.T) {
	for _, limit := range []int{1, 5000, 1 << 20} {
		db, msgs, raws := aheadMails(10, 1000, 0, 4, 9)
		a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), limit, time.Minute)
		for i := range 10 {
			raw, err := a.Next()
			gone := i == 0 || i == 4 || i == 9
			if gone != errors.Is(err, client.ErrNotFound) || !gone && string(raw) != string(raws[i]) {
				t.Fatalf("limit %d, mail %d: %.30q, %v", limit, i, raw, err)
			}
		}
		a.Stop()
	}
}

// TestReadAheadError: when dbd fails, every mail left gets the error at
// once (no timeout per mail).
func TestReadAheadError(t *testing.T) {
	db, msgs, _ := aheadMails(100, 10)
	db.fail = errors.New("dbd gone")
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 1000, time.Minute)
	for i := range 100 {
		if _, err := a.Next(); err == nil || !strings.Contains(err.Error(), "dbd gone") {
			a.Stop()
			t.Fatalf("mail %d: %v", i, err)
		}
	}
	// Stop waits for the requests in flight; one may end only after the
	// last Next (CI's race detector saw the count read while it did).
	a.Stop()
	if n := db.requestCount(); n > aheadWindow {
		t.Fatalf("%d requests after a failure, want at most the %d in flight when it came", n, aheadWindow)
	}
}

// TestReadAheadWindow: while dbd reads one run of mails the next is
// already asked for, and the mails still come in order.
func TestReadAheadWindow(t *testing.T) {
	db, msgs, raws := aheadMails(200, 1000)
	db.block = make(chan struct{})
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 1<<20, time.Minute)
	defer a.Stop()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		db.mu.Lock()
		n := db.waiting
		db.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d request(s) in flight, want 2", n)
		}
	}
	close(db.block)
	for i := range msgs {
		if raw, err := a.Next(); err != nil || string(raw) != string(raws[i]) {
			t.Fatalf("mail %d = %.30q, %v", i, raw, err)
		}
	}
}

// TestReadAheadStopWhileReading: Stop ends a request in progress.
func TestReadAheadStopWhileReading(t *testing.T) {
	db, msgs, _ := aheadMails(10, 10)
	db.block = make(chan struct{})
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 1000, time.Minute)
	done := make(chan struct{})
	go func() { a.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the request in progress")
	}
}

// TestReadAheadOldDBD: against a dbd without op mails, mail by mail.
func TestReadAheadOldDBD(t *testing.T) {
	a, b := model.Key{1}, model.Key{2}
	db := &oldDB{mails: map[model.Key][]byte{a: []byte("Received: x\r\nSubject: a\r\n\r\nA\r\n")}}
	r := New(db).ReadAhead(context.Background(), []Message{{Receive: a}, {Receive: b}}, [][]string{nil, nil}, 1000, time.Minute)
	defer r.Stop()
	if raw, err := r.Next(); err != nil || string(raw) != string(db.mails[a]) {
		t.Fatalf("mail a: %q, %v", raw, err)
	}
	if _, err := r.Next(); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("missing mail b: %v, want ErrNotFound", err)
	}
}

// TestReadAheadRecycle: the memory of a mail given back with Recycle is
// where Next joins the next one, every mail still comes whole and in
// order, and a buffer larger than recycleMax is not kept.
func TestReadAheadRecycle(t *testing.T) {
	const size = 1000
	db, msgs, raws := aheadMails(300, size)
	a := New(db).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 8*size, time.Minute)
	defer a.Stop()
	given := map[*byte]bool{}
	reused := 0
	for i := range msgs {
		raw, err := a.Next()
		if err != nil || string(raw) != string(raws[i]) {
			t.Fatalf("mail %d = %.30q, %v", i, raw, err)
		}
		if given[&raw[:1][0]] {
			reused++
		}
		given[&raw[:1][0]] = true
		a.Recycle(raw)
		// Overwrite what was given back, as the next use of the
		// memory will: a mail still held by Ahead must not change.
		clear(raw)
	}
	if reused < len(msgs)-10 {
		t.Fatalf("%d of %d mails joined into recycled memory", reused, len(msgs))
	}
	a.Recycle(make([]byte, 0, recycleMax+1))
	a.mu.Lock()
	if cap(a.spare) > recycleMax {
		t.Errorf("a buffer of %d bytes kept", cap(a.spare))
	}
	a.mu.Unlock()
}

// pooledMailsDB is a mailsDB whose answers lie in one buffer each, as the
// client's decrypted frames do; release overwrites it, as the next answer
// decrypted into it would.
type pooledMailsDB struct {
	*mailsDB
	mu       sync.Mutex
	answers  int
	released int
	twice    int // releases of an answer already released
}

func (d *pooledMailsDB) MailsRowsPooled(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, func(), error) {
	byKey, err := d.MailsRows(ctx, keys, budget)
	if err != nil {
		return nil, func() {}, err
	}
	var all []*wire.Row
	var buf []byte
	for _, rows := range byKey {
		for i := range rows {
			all = append(all, &rows[i])
			buf = append(buf, rows[i].Content...)
		}
	}
	off := 0
	for _, r := range all {
		n := len(r.Content)
		r.Content = buf[off : off+n : off+n]
		off += n
	}
	d.mu.Lock()
	d.answers++
	d.mu.Unlock()
	done := false
	return byKey, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if done {
			d.twice++
			return
		}
		done = true
		d.released++
		for i := range buf {
			buf[i] = 'X'
		}
	}, nil
}

// TestReadAheadPooled: the memory of a pooled answer is given back once,
// and only after every mail of it was joined (a mail joined after the
// release would hold the overwritten bytes), also when the budget ends an
// answer early and when the last mail asked for is missing.
func TestReadAheadPooled(t *testing.T) {
	for _, missing := range [][]int{nil, {3, 17, 63, 64, 99}} {
		db, msgs, raws := aheadMails(100, 1000, missing...)
		pdb := &pooledMailsDB{mailsDB: db}
		a := New(pdb).ReadAhead(context.Background(), msgs, make([][]string, len(msgs)), 10_000, time.Minute)
		for i := range msgs {
			raw, err := a.Next()
			if isMissing := slices.Contains(missing, i); isMissing != (err != nil) {
				t.Fatalf("missing %v, mail %d: %v", missing, i, err)
			}
			if err == nil && string(raw) != string(raws[i]) {
				t.Fatalf("missing %v, mail %d: %q, want %q", missing, i, raw, raws[i])
			}
		}
		a.Stop()
		pdb.mu.Lock()
		if pdb.answers < 2 || pdb.released != pdb.answers || pdb.twice != 0 {
			t.Errorf("missing %v: %d answers, %d released, %d released twice", missing, pdb.answers, pdb.released, pdb.twice)
		}
		pdb.mu.Unlock()
	}
}

// headsMailsDB is a mailsDB that knows wire.MailsNoBody.
type headsMailsDB struct{ *mailsDB }

func (d headsMailsDB) MailsHeadsPooled(ctx context.Context, keys []model.Key, budget uint64) (map[model.Key][]wire.Row, func(), error) {
	byKey, err := d.mailsRows(ctx, keys, budget, true)
	return byKey, func() {}, err
}

// headMails are mails whose heads are easy to get wrong: Received fields
// put back, one without line end (last only when no body follows), no
// blank line, an empty body, folded fields dropped.
var headMails = []string{
	"Received: from a\r\nSubject: one\r\n\r\nbody\r\n",
	"Subject: two\r\nReceived: from b\r\n\tfolded\r\nX-Drop: 1\r\n folded too\r\nTo: c\r\n\r\n",
	"Subject: three\r\nReceived: from c",
	"Received: from d\r\nSubject: four, no blank line\r\n",
	"X-Drop: at the start\r\nReceived: x\r\n\r\n\r\nbody after an empty line\r\n",
	"\r\nbody only",
	"Subject: lf only\nReceived: y\n\nbody\n",
	"Subject: bare cr line\r\n\r\r\nReceived: z\r\n\r\nbody\r\n",
	"",
}

// TestReadAheadHeads: each head is what Fetch returns but the body, and
// its size the length of what Fetch returns, with and without dropped
// fields, from a DB that sends no bodies (which the read-ahead asks for),
// from one that sends them, and from a dbd without op mails; NextOrigin
// and NextHead refuse the other kind of read-ahead.
func TestReadAheadHeads(t *testing.T) {
	db, msgs, raws := aheadMails(100, 700)
	for _, s := range headMails {
		k := model.KeyOf(model.Receive, []byte(s))
		db.mails[k] = []byte(s)
		msgs, raws = append(msgs, Message{Receive: k}), append(raws, []byte(s))
	}
	old := &oldDB{mails: db.mails}
	for _, drop := range [][]string{nil, {"received"}, {"x-drop", "subject"}} {
		drops := make([][]string, len(msgs))
		for i := range drops {
			drops[i] = drop
		}
		for name, d := range map[string]DB{"no bodies": headsMailsDB{db}, "bodies": db, "no op mails": old} {
			s := New(d)
			a := s.ReadAheadHeads(context.Background(), msgs, drops, 5000, time.Minute)
			for i := range msgs {
				h, o, err := a.NextHead()
				if err != nil {
					t.Fatalf("%s, drop %v, mail %d: %v", name, drop, i, err)
				}
				want, err := New(old).Fetch(context.Background(), msgs[i], drop)
				if err != nil {
					t.Fatal(err)
				}
				body := model.Split(raws[i]).Body
				if h.Size != int64(len(want)) || string(h.Header)+string(body) != string(want) {
					t.Fatalf("%s, drop %v, mail %d: head %q of %d bytes, want %q of %d", name, drop, i, h.Header, h.Size, want[:len(want)-len(body)], len(want))
				}
				r := model.NewMailRows(raws[i])
				wo := Origin{Mail: r.MailKey}
				if len(r.Received) > 0 {
					wo.Received = r.ReceivedKey
				}
				if name != "no op mails" && o != wo {
					t.Errorf("%s, mail %d: origin %v, want %v", name, i, o, wo)
				}
				a.Recycle(h.Header)
			}
			a.Stop()
		}
	}
	a := New(db).ReadAheadHeads(context.Background(), msgs[:2], make([][]string, 2), 5000, time.Minute)
	if _, _, err := a.NextOrigin(); !errors.Is(err, errAheadKind) {
		t.Errorf("NextOrigin of heads: %v", err)
	}
	a.Stop()
	b := New(db).ReadAhead(context.Background(), msgs[:2], make([][]string, 2), 5000, time.Minute)
	if _, _, err := b.NextHead(); !errors.Is(err, errAheadKind) {
		t.Errorf("NextHead of mails: %v", err)
	}
	b.Stop()
}

// TestReadAheadHeadsBudget: without bodies, a request's budget counts
// the contents sent, so the heads of many large mails come a few
// requests, not one request a mail's size.
func TestReadAheadHeadsBudget(t *testing.T) {
	db, msgs, _ := aheadMails(64, 100_000)
	a := New(headsMailsDB{db}).ReadAheadHeads(context.Background(), msgs, make([][]string, len(msgs)), 1<<20, time.Minute)
	for i := range msgs {
		h, _, err := a.NextHead()
		if err != nil || h.Size < 100_000 || len(h.Header) > 100 {
			a.Stop()
			t.Fatalf("mail %d: %d bytes of header, size %d, %v", i, len(h.Header), h.Size, err)
		}
	}
	a.Stop()
	if n := db.requestCount(); n > 2 {
		t.Fatalf("%d requests for the heads of 64 mails of 100 kB", n)
	}
}

// TestJoinHeadOpenReceived: a Received field without line end may end a
// mail only when no body follows; rows that put one before a body are
// joined without their trace fields, and the head is cut from that same
// mail (a head joined without the body would keep the field).
func TestJoinHeadOpenReceived(t *testing.T) {
	var enc []byte
	enc = binary.AppendUvarint(enc, 1)
	enc = binary.AppendUvarint(enc, uint64(len("Received: y")))
	enc = append(enc, "Received: y"...)
	for _, body := range []string{"", "b"} {
		p := model.Parts{Header: []byte("Subject: x\r\n"), Received: enc, Body: []byte(body)}
		want, err := joinParts(Message{}, p, true, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := joinHead(Message{}, model.Parts{Header: p.Header, Received: enc}, true, int64(len(body)), nil, nil)
		if err != nil || h.Size != int64(len(want)) || string(h.Header)+body != string(want) {
			t.Fatalf("body %q: head %q of %d, %v; mail %q", body, h.Header, h.Size, err, want)
		}
	}
}

// TestFetchManyPooledRecycled: FetchMany reads a DB's pooled answers and
// gives each back once, after its mails were joined (the overwritten
// memory would show in the mails otherwise); a mail given back with
// Recycle is the memory a later FetchMany joins into, and that mail's
// bytes are right.
func TestFetchManyPooledRecycled(t *testing.T) {
	inner, msgs, want := aheadMails(2*wire.MaxMailsKeys+3, 300)
	db := &pooledMailsDB{mailsDB: inner}
	s := New(db)
	drops := make([][]string, len(msgs))
	raws, errs := s.FetchMany(context.Background(), msgs, drops)
	for i := range msgs {
		if errs[i] != nil || !bytes.Equal(raws[i], want[i]) {
			t.Fatalf("mail %d: %q, %v", i, raws[i], errs[i])
		}
	}
	if db.answers != 3 || db.released != 3 || db.twice != 0 {
		t.Fatalf("%d answers, %d released, %d released twice; want 3, 3, 0", db.answers, db.released, db.twice)
	}
	// sync.Pool may drop what it is given (under the race detector it
	// does at random), so a few tries.
	reused := false
	for try := 0; try < 20 && !reused; try++ {
		old := raws[0]
		s.Recycle(old)
		raws, errs = s.FetchMany(context.Background(), msgs[1:2], drops[1:2])
		if errs[0] != nil || !bytes.Equal(raws[0], want[1]) {
			t.Fatalf("after a Recycle: %q, %v", raws[0], errs[0])
		}
		reused = unsafe.SliceData(raws[0]) == unsafe.SliceData(old)
	}
	if !reused {
		t.Fatal("FetchMany never joined into a recycled mail's memory")
	}
}
