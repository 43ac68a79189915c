// Package test runs smsd as processes against two real dbd sites joined by
// backupd: one smsd per site, a loopback HTTP SMS gateway and a loopback
// SMTP sink that record what arrives (SPEC §9, issue 7).
package test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := proctest.Build("smsd-bin-", map[string]string{
		"dbd": "github.com/twinmx/twinmx/services/dbd/cmd/dbd", "dbctl": "github.com/twinmx/twinmx/services/dbd/cmd/dbctl",
		"backupd": "github.com/twinmx/twinmx/services/backupd/cmd/backupd", "smsd": "../cmd/smsd",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// site is one dbd with its keys: admin, notify (smsd's) and the shared
// backupd key.
type site = proctest.DB

func newSite(t *testing.T, dir, name, backupdPub string) *site {
	s := proctest.NewDB(t, proctest.DBConfig{Bin: binDir, Dir: filepath.Join(dir, name), Site: name,
		Keys: map[string]string{"notify": "notify"}, Clients: []string{"backupd " + backupdPub}})
	s.Start()
	return s
}

// gatewayServer is the loopback HTTP SMS gateway. It fails the next
// failNext requests with 503 without recording them.
type gatewayServer struct {
	url string

	mu       sync.Mutex
	got      []sms
	failNext int
	failed   int
}

type sms struct{ To, Text string }

func newGateway(t *testing.T) *gatewayServer {
	g := &gatewayServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m sms
		if r.Header.Get("Authorization") != "Bearer gw-secret" || json.NewDecoder(r.Body).Decode(&m) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.failNext > 0 {
			g.failNext--
			g.failed++
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		g.got = append(g.got, m)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	g.url = "http://" + ln.Addr().String() + "/send"
	return g
}

func (g *gatewayServer) count(text string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.got {
		if m.Text == text {
			n++
		}
	}
	return n
}

func (g *gatewayServer) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.got)
}

// sink is the loopback SMTP server forward copies go to.
type sink struct {
	addr string
	mu   sync.Mutex
	got  []copyMail
}

type copyMail struct {
	rcpt string
	data []byte
}

type sinkSession struct {
	s    *sink
	rcpt string
}

func (ss *sinkSession) AuthPlain(string, string) error            { return nil }
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error { ss.rcpt = to; return nil }
func (ss *sinkSession) Reset()                                    {}
func (ss *sinkSession) Logout() error                             { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.got = append(ss.s.got, copyMail{rcpt: ss.rcpt, data: b})
	ss.s.mu.Unlock()
	return nil
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.addr = ln.Addr().String()
	return s
}

// copies returns how many copies of raw arrived for rcpt, byte for byte.
// copies counts the forward copies of raw to rcpt: the stored mail byte
// for byte below the Delivered-To field of the mailbox it was forwarded
// from (box), which marks the copy against forward loops.
func (s *sink) copies(rcpt string, raw []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := "Delivered-To: " + box + "\r\n" + string(raw)
	n := 0
	for _, c := range s.got {
		if c.rcpt == rcpt && string(c.data) == want {
			n++
		}
	}
	return n
}

func (s *sink) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// metric returns the value of one series of an smsd's /metrics (0 if absent).
func metric(t *testing.T, addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// waitFor polls cond until it holds or the test's bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForLong(t, 90*time.Second, what, cond)
}

const (
	box    = "hotline@example.com"
	phone  = "+491701234567"
	copyTo = "copy@phone.example"
)

// smsDone is the receive column confirming the SMS to phone
// (docs/smsd.md: sms.s.<base32 of the first 80 bits of SHA-256(number)>).
func smsDone(number string) string {
	h := sha256.Sum256([]byte(number))
	return "sms.s." + base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding).EncodeToString(h[:10])
}

type mail struct {
	subject string
	raw     []byte
	key     model.Key // receive row
}

// deliver stores an acknowledged mail the way smtpd does (rows, received
// link valued with the acknowledgement time) with spamd's verdict.
func deliver(t *testing.T, ctx context.Context, s *site, from, subject string, at time.Time, ack bool, v model.Verdict) mail {
	t.Helper()
	raw := fmt.Sprintf("Received: from client.example by mx.example; %s\r\nFrom: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"+
		"Message-ID: <%s@test>\r\n\r\nfirst line of %s\r\n.leading dot\r\n", at.Format(time.RFC1123Z), from, box, subject, subject, subject)
	rows := model.NewMailRows([]byte(raw))
	rc := model.ReceiveContent(rows.MailKey, model.KeyOf(model.Mailbox, model.MailboxContent(box)))
	ref := wire.Ref{Content: rc}
	reqs := []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Header, Content: rows.Parts.Header},
		{Op: wire.OpFindOrInsert, Table: model.Body, Content: rows.Parts.Body},
		{Op: wire.OpFindOrInsert, Table: model.Received, Content: rows.Received},
		{Op: wire.OpFindOrInsert, Table: model.Mail, Content: rows.Mail},
		{Op: wire.OpFindOrInsert, Table: model.Receive, Content: rc},
		{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColVerdict, Value: model.EncodeVerdict(model.SourceFilter, model.Epoch(at), v)},
	}
	if ack {
		reqs = append(reqs,
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ReceivedColumn(rows.ReceivedKey), Value: uint64(at.UnixMilli())},
			wire.Request{Op: wire.OpSet, Table: model.Receive, Ref: ref, Name: model.ColAcknowledged, Value: model.FlagSet})
	}
	if _, err := s.Client().Batch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	return mail{subject: subject, raw: []byte(raw), key: model.KeyOf(model.Receive, rc)}
}

// col reads one column of a receive row at a site (0 if missing).
func col(ctx context.Context, s *site, k model.Key, name string) uint64 {
	row, err := s.Client().FindMeta(ctx, model.Receive, k)
	if err != nil {
		return 0
	}
	return row.State.Col(name)
}

// TestTwoSites: with both smsd running each matching mail gives one SMS
// and every accepted mail one forward copy; other senders, mail outside
// the window, unacknowledged and rejected mail give none; a failing
// gateway is retried without loss or doubles; with site A's smsd killed
// (kill -9) site B sends after its delay; with site A's dbd down too, B
// still sends and forwards.
func TestTwoSites(t *testing.T) {
	dir := t.TempDir()
	run(t, "dbctl", "keygen", "--out", filepath.Join(dir, "backupd"))
	a := newSite(t, dir, "A", filepath.Join(dir, "backupd.pub"))
	b := newSite(t, dir, "B", filepath.Join(dir, "backupd.pub"))
	proctest.StartProc(t, binDir, "backupd", "", "--key", filepath.Join(dir, "backupd"), "--metrics", proctest.FreePort(t),
		"--site", fmt.Sprintf("A=%s,%s", a.Addr, a.Key("dbd.pub")), "--site", fmt.Sprintf("B=%s,%s", b.Addr, b.Key("dbd.pub")))
	ctx := proctest.Ctx(t, 5*time.Minute)

	// The mailbox and its rules, written at site A; backupd takes them to B.
	if _, _, err := a.Client().FindOrInsert(ctx, model.Mailbox, model.MailboxContent(box)); err != nil {
		t.Fatal(err)
	}
	run(t, "smsd", append([]string{"rule", "set"}, append(a.DBFlags("admin"), "--mailbox", box, "--name", "office",
		"--from", "list:hotline", "--from", "@big.example", "--window", "mon-fri 08:00-18:00", "--phone", phone,
		"--template", "{subject} from {from}: {line}")...)...)
	run(t, "smsd", append([]string{"zone"}, append(a.DBFlags("admin"), "--mailbox", box, "Europe/Berlin")...)...)
	run(t, "smsd", append([]string{"list", "add"}, append(a.DBFlags("admin"), "--mailbox", box, "--list", "hotline", "vip@customer.example")...)...)
	run(t, "smsd", append([]string{"forward", "add"}, append(a.DBFlags("admin"), "--mailbox", box, copyTo)...)...)
	show := run(t, "smsd", append([]string{"rule", "show"}, append(a.DBFlags("admin"), "--mailbox", box)...)...)
	for _, want := range []string{"zone Europe/Berlin", "forward " + copyTo, "from: list:hotline", "phone: " + phone} {
		if !strings.Contains(show, want) {
			t.Fatalf("rule show lacks %q:\n%s", want, show)
		}
	}
	mbKey := model.KeyOf(model.Mailbox, model.MailboxContent(box))
	waitFor(t, "the rules to reach site B", func() bool {
		row, err := b.Client().FindMeta(ctx, model.Mailbox, mbKey)
		return err == nil && len(row.State.Cols) >= 3
	})

	gw := newGateway(t)
	sk := newSink(t)
	secret := filepath.Join(dir, "gw-secret")
	os.WriteFile(secret, []byte("gw-secret\n"), 0o600)
	smsd := func(s *site, name string, extra ...string) (*proctest.Proc, string) {
		m := proctest.FreePort(t)
		args := append(s.DBFlags("notify"), "--site", name, "--gateway-url", gw.url,
			"--gateway-header", "Authorization: Bearer {{.Secret}}", "--gateway-secret-file", secret,
			"--relay", sk.addr, "--relay-tls", "none", "--forward-from", "smsd@example.com",
			"--retry-min", "100ms", "--retry-max", "500ms", "--claim-timeout", "3s", "--metrics", m)
		p := proctest.StartProc(t, binDir, "smsd", m, append(args, extra...)...)
		return p, m
	}
	smsdA, metA := smsd(a, "A")
	_, metB := smsd(b, "B", "--peer-delay", "2s")

	// Monday 2026-03-02 10:00 Berlin is inside the window; Saturday is not.
	in := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	out := time.Date(2026, 3, 7, 9, 0, 0, 0, time.UTC)
	text := func(m mail, from string) string {
		return fmt.Sprintf("%s from %s: first line of %s", m.subject, from, m.subject)
	}
	m1 := deliver(t, ctx, a, "vip@customer.example", "m1", in, true, model.Accept)
	m2 := deliver(t, ctx, a, "someone@big.example", "m2", in.Add(time.Minute), true, model.Accept)
	m3 := deliver(t, ctx, a, "nobody@else.example", "m3", in, true, model.Accept)
	m4 := deliver(t, ctx, a, "vip@customer.example", "m4", out, true, model.Accept)
	m5 := deliver(t, ctx, a, "vip@customer.example", "m5", in, false, model.Accept)
	m6 := deliver(t, ctx, a, "vip@customer.example", "m6", in, true, model.Reject)

	sent := func(m mail) bool {
		return col(ctx, a, m.key, smsDone(phone)) != 0 && col(ctx, b, m.key, smsDone(phone)) != 0
	}
	waitFor(t, "m1 and m2 confirmed at both sites", func() bool { return sent(m1) && sent(m2) })
	waitFor(t, "four forward copies", func() bool { return sk.total() >= 4 })
	// Site B has seen both confirmed and both non-matching mails: from
	// here on it can never send them.
	waitFor(t, "site B to see the rows done", func() bool {
		return metric(t, metB, `twinmx_smsd_decisions_total{decision="done",kind="sms"}`) >= 2 &&
			metric(t, metB, `twinmx_smsd_decisions_total{decision="nomatch",kind="sms"}`) >= 2 &&
			metric(t, metB, `twinmx_smsd_decisions_total{decision="done",kind="forward"}`) >= 4 &&
			metric(t, metA, `twinmx_smsd_decisions_total{decision="nomatch",kind="sms"}`) >= 2
	})
	for _, m := range []mail{m1, m2} {
		from := "vip@customer.example"
		if m.subject == "m2" {
			from = "someone@big.example"
		}
		if n := gw.count(text(m, from)); n != 1 {
			t.Errorf("%s: %d SMS, want 1", m.subject, n)
		}
	}
	if n := gw.total(); n != 2 {
		t.Errorf("gateway got %d SMS, want 2 (m3 other sender, m4 outside the window, m5 unacknowledged, m6 rejected): %+v", n, gw.got)
	}
	for _, m := range []mail{m1, m2, m3, m4} {
		if n := sk.copies(copyTo, m.raw); n != 1 {
			t.Errorf("%s: %d byte-exact forward copies, want 1", m.subject, n)
		}
	}
	for _, m := range []mail{m5, m6} {
		if n := sk.copies(copyTo, m.raw); n != 0 {
			t.Errorf("%s: %d forward copies, want none", m.subject, n)
		}
	}

	// A failing gateway: three 503s, then it works again.
	gw.mu.Lock()
	gw.failNext = 3
	gw.mu.Unlock()
	m7 := deliver(t, ctx, a, "vip@customer.example", "m7", in, true, model.Accept)
	waitFor(t, "m7 confirmed at both sites", func() bool { return sent(m7) })
	waitFor(t, "site B to see m7 done", func() bool {
		return metric(t, metB, `twinmx_smsd_decisions_total{decision="done",kind="sms"}`) >= 3
	})
	if n := gw.count(text(m7, "vip@customer.example")); n != 1 {
		t.Errorf("m7 with a failing gateway: %d SMS, want 1", n)
	}
	if r := metric(t, metA, `twinmx_smsd_retries_total{kind="sms"}`) + metric(t, metB, `twinmx_smsd_retries_total{kind="sms"}`); r < 3 {
		t.Errorf("retries counted: %v, want at least 3", r)
	}

	// Site A's smsd dies: site B sends after its peer delay.
	smsdA.Kill()
	m8 := deliver(t, ctx, a, "vip@customer.example", "m8", in, true, model.Accept)
	waitFor(t, "site B to send m8", func() bool { return gw.count(text(m8, "vip@customer.example")) >= 1 && sk.copies(copyTo, m8.raw) >= 1 })
	if _, owner := claimOwner(ctx, b, m8.key, "sms.claim"); owner != 2 {
		t.Errorf("m8 claimed by site %d, want B (2)", owner)
	}

	// Site A's dbd is down too: mail delivered at B still gets its SMS
	// and its copy.
	a.Kill()
	m9 := deliver(t, ctx, b, "vip@customer.example", "m9", in, true, model.Accept)
	waitFor(t, "site B to send m9", func() bool { return gw.count(text(m9, "vip@customer.example")) >= 1 && sk.copies(copyTo, m9.raw) >= 1 })
	waitFor(t, "m9 confirmed at B", func() bool {
		return col(ctx, b, m9.key, smsDone(phone)) != 0 && col(ctx, b, m9.key, "fwd.s."+strings.TrimPrefix(smsDone(copyTo), "sms.s.")) != 0
	})
	for _, m := range []mail{m8, m9} {
		if n := gw.count(text(m, "vip@customer.example")); n != 1 {
			t.Errorf("%s: %d SMS, want 1", m.subject, n)
		}
		if n := sk.copies(copyTo, m.raw); n != 1 {
			t.Errorf("%s: %d forward copies, want 1", m.subject, n)
		}
	}
	if n, want := gw.total(), 5; n != want {
		t.Errorf("gateway got %d SMS in all, want %d", n, want)
	}
	if n, want := sk.total(), 7; n != want {
		t.Errorf("sink got %d copies in all, want %d", n, want)
	}
}

func claimOwner(ctx context.Context, s *site, k model.Key, name string) (uint64, uint64) {
	v := col(ctx, s, k, name)
	return v >> 8, v & 0xff
}
