package daemon

import (
	"bufio"
	"compress/flate"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/tlsconf"
	"github.com/twinmx/twinmx/services/dbd/dbdtest"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

const (
	login    = "alice"
	password = "correct horse"
	address  = "alice@x.example"
)

// kit is one dbd and one imapd in this process, on 127.0.0.1.
type kit struct {
	t       testing.TB
	ctx     context.Context
	admin   *client.Client
	env     *dbdtest.Env
	addr    string // plain (STARTTLS) listener
	tlsAddr string
	reg     *prometheus.Registry
	// stopFirst stops the imapd at addr (before cleanup does).
	stopFirst func()
}

func start(t testing.TB) *kit {
	t.Helper()
	return startWith(t, nil)
}

// startWith is start with mod applied to imapd's Config.
func startWith(t testing.TB, mod func(*Config)) *kit {
	t.Helper()
	e := dbdtest.Start(t, dbdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	k := &kit{t: t, ctx: ctx, admin: e.Client("admin"), env: e, reg: prometheus.NewRegistry()}
	if err := testkit.AddUser(ctx, k.admin, login, password, address); err != nil {
		t.Fatal(err)
	}
	k.addr, k.tlsAddr, k.stopFirst = k.runIMAPD(mod)
	return k
}

// runIMAPD starts an imapd over k's dbd and returns its addresses and a
// stop function (also called at cleanup; calling it twice is harmless).
func (k *kit) runIMAPD(mod func(*Config)) (addr, tlsAddr string, stop func()) {
	t, e := k.t, k.env
	tc, err := tlsconf.SelfSignedTLS("localhost")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	cfg := Config{
		Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", DB: e.Addr, DBKey: e.DBKey.Public,
		Key: e.Keys["mailbox"], TLS: tc, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Ready: func(p, s net.Addr) { ready <- [2]net.Addr{p, s} },
	}
	if k.addr == "" {
		cfg.Registry = k.reg
	}
	if mod != nil {
		mod(&cfg)
	}
	go func() { done <- Run(runCtx, cfg) }()
	select {
	case a := <-ready:
		addr, tlsAddr = a[0].String(), a[1].String()
	case err := <-done:
		t.Fatalf("imapd: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("imapd: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return addr, tlsAddr, stop
}

func (k *kit) deliver(raw string) {
	k.t.Helper()
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(raw), true, time.Now()); err != nil {
		k.t.Fatal(err)
	}
}

// dial connects over plain TCP (loopback may log in without TLS).
func (k *kit) dial(o *imapclient.Options) *imapclient.Client {
	k.t.Helper()
	c, err := imapclient.DialInsecure(k.addr, o)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { c.Close() })
	return c
}

func (k *kit) loggedIn(o *imapclient.Options) *imapclient.Client {
	k.t.Helper()
	c := k.dial(o)
	if err := c.Login(login, password).Wait(); err != nil {
		k.t.Fatalf("login: %v", err)
	}
	return c
}

func mail(i int) string {
	return fmt.Sprintf("Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\nFrom: Bob <bob@y.example>\r\nTo: alice@x.example\r\nSubject: mail %d\r\nDate: Sat, 28 Nov 2026 10:00:%02d +0000\r\nMessage-ID: <%d@y.example>\r\n\r\nbody %d\r\nline two\r\n", i, i%60, i, i)
}

func TestLogin(t *testing.T) {
	k := start(t)
	c := k.dial(nil)
	if err := c.Login(login, "wrong").Wait(); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := c.Login("nobody", password).Wait(); err == nil {
		t.Fatal("unknown login accepted")
	}
	if err := c.Login("ALICE", password).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	// Implicit TLS and STARTTLS.
	tc := &tls.Config{InsecureSkipVerify: true}
	ct, err := imapclient.DialTLS(k.tlsAddr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.Login(login, password).Wait(); err != nil {
		t.Fatalf("login over TLS: %v", err)
	}
	cs, err := imapclient.DialStartTLS(k.addr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := cs.Login(login, password).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}
	if got := testutil.ToFloat64(mustCounter(t, k.reg, "twinmx_imapd_logins_total", "ok")); got != 3 {
		t.Errorf("logins ok = %v, want 3", got)
	}
}

// TestLoginLimit: after too many failed logins from one address, even the
// right password is refused until the window passes; the count is per
// address and shows in the metrics.
func TestLoginLimit(t *testing.T) {
	k := startWith(t, func(c *Config) { c.MaxAuthFailures, c.AuthFailDelay = 2, -1 })
	c := k.dial(nil)
	for range 2 {
		if err := c.Login(login, "wrong").Wait(); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	err := c.Login(login, password).Wait()
	if err == nil || !strings.Contains(err.Error(), "too many failed logins") {
		t.Fatalf("right password after 2 failures (limit 2): %v, want refused", err)
	}
	if got := testutil.ToFloat64(mustCounter(t, k.reg, "twinmx_imapd_logins_total", "refused")); got != 1 {
		t.Errorf("logins refused = %v, want 1", got)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}

// TestNoPlaintextLoginFromRemote (TEST-CATALOG 51): a client that is not
// on loopback must use TLS (RFC 9051 §6.2.3, §7.1.2): without it
// CAPABILITY says LOGINDISABLED and no AUTH=PLAIN, and LOGIN and
// AUTHENTICATE PLAIN get NO [PRIVACYREQUIRED]; after STARTTLS, or on the
// implicit-TLS port, it logs in. PlaintextFrom makes the loopback client a
// remote one for the dispatcher and the session alike.
func TestNoPlaintextLoginFromRemote(t *testing.T) {
	k := startWith(t, func(c *Config) { c.PlaintextFrom = func(net.Addr) bool { return false } })
	r := k.raw()
	r.send("c CAPABILITY\r\n")
	caps := r.until("* CAPABILITY")
	if !strings.Contains(caps, " LOGINDISABLED") || strings.Contains(caps, "AUTH=PLAIN") || !strings.Contains(caps, " STARTTLS") {
		t.Errorf("CAPABILITY without TLS from a remote client = %q, want LOGINDISABLED and STARTTLS, no AUTH=PLAIN", caps)
	}
	r.until("c OK")
	r.send(fmt.Sprintf("l LOGIN %s %q\r\n", login, password))
	if s := r.until("l "); !strings.HasPrefix(s, "l NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN without TLS from a remote client: %q, want NO [PRIVACYREQUIRED]", s)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + login + "\x00" + password))
	r.send("p AUTHENTICATE PLAIN " + ir + "\r\n")
	if s := r.until("p "); !strings.HasPrefix(s, "p NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE PLAIN without TLS from a remote client: %q, want NO [PRIVACYREQUIRED]", s)
	}
	r.send("q AUTHENTICATE PLAIN\r\n")
	if s := r.until("q "); !strings.HasPrefix(s, "q NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE PLAIN (no initial response) without TLS: %q, want NO [PRIVACYREQUIRED]", s)
	}
	r.send("s SELECT INBOX\r\n")
	if s := r.until("s "); strings.HasPrefix(s, "s OK") {
		t.Errorf("SELECT after refused logins: %q", s)
	}
	// With TLS the same client logs in.
	tc := &tls.Config{InsecureSkipVerify: true}
	cs, err := imapclient.DialStartTLS(k.addr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if c, err := cs.Capability().Wait(); err != nil || c.Has(imap.CapLoginDisabled) || !c.Has(imap.AuthCap(sasl.Plain)) {
		t.Errorf("CAPABILITY after STARTTLS = %v, %v; want AUTH=PLAIN, no LOGINDISABLED", c, err)
	}
	if err := cs.Login(login, password).Wait(); err != nil {
		t.Errorf("login after STARTTLS: %v", err)
	}
	ct, err := imapclient.DialTLS(k.tlsAddr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.Authenticate(sasl.NewPlainClient("", login, password)); err != nil {
		t.Errorf("AUTHENTICATE PLAIN over TLS: %v", err)
	}
	if got := testutil.ToFloat64(mustCounter(t, k.reg, "twinmx_imapd_logins_total", "ok")); got != 2 {
		t.Errorf("logins ok = %v, want 2 (the TLS ones)", got)
	}
}

func TestSelectFetchByteExact(t *testing.T) {
	k := start(t)
	for i := 1; i <= 3; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	sd, err := c.Select("inbox", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages != 3 || sd.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v, want 3 messages and a UIDVALIDITY", sd)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, InternalDate: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{sec, hdr},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("FETCH answered %d messages, want 3", len(msgs))
	}
	var lastUID imap.UID
	for i, m := range msgs {
		want := mail(i + 1)
		if got := string(m.FindBodySection(sec)); got != want {
			t.Errorf("BODY[] of %d = %q, want %q", i+1, got, want)
		}
		if got := string(m.FindBodySection(hdr)); got != want[:strings.Index(want, "\r\n\r\n")+4] {
			t.Errorf("BODY[HEADER] of %d = %q", i+1, got)
		}
		if m.RFC822Size != int64(len(want)) {
			t.Errorf("RFC822.SIZE of %d = %d, want %d", i+1, m.RFC822Size, len(want))
		}
		if m.Envelope == nil || m.Envelope.Subject != fmt.Sprintf("mail %d", i+1) {
			t.Errorf("ENVELOPE of %d = %+v", i+1, m.Envelope)
		}
		if m.UID <= lastUID {
			t.Errorf("UIDs not ascending: %d after %d", m.UID, lastUID)
		}
		lastUID = m.UID
		if len(m.Flags) != 0 {
			t.Errorf("flags of a new mail = %v", m.Flags)
		}
		if time.Since(m.InternalDate) > time.Hour {
			t.Errorf("INTERNALDATE = %v, want about now", m.InternalDate)
		}
	}
	// A partial and BODY[TEXT].
	part := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 2, Size: 4}}
	got, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{part}}).Collect()
	if err != nil || len(got) != 1 {
		t.Fatalf("FETCH partial: %v", err)
	}
	if s := string(got[0].FindBodySection(part)); s != "dy 1" {
		t.Errorf("BODY[TEXT]<2.4> = %q, want %q", s, "dy 1")
	}
	// BODY[TEXT] without PEEK set \Seen.
	fl, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || !slices.Contains(fl[0].Flags, imap.FlagSeen) {
		t.Errorf("flags after BODY[] = %v, %v; want \\Seen", fl, err)
	}
}

func TestFlagsSearchExpunge(t *testing.T) {
	k := start(t)
	for i := 1; i <= 4; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := func(set imap.SeqSet, op imap.StoreFlagsOp, fl ...imap.Flag) {
		t.Helper()
		if err := c.Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: fl}, nil).Close(); err != nil {
			t.Fatalf("STORE %v %v: %v", op, fl, err)
		}
	}
	store(imap.SeqSetNum(1, 2), imap.StoreFlagsAdd, imap.FlagFlagged, "work", "$label1", imap.FlagJunk)
	store(imap.SeqSetNum(2), imap.StoreFlagsDel, imap.FlagFlagged)
	store(imap.SeqSetNum(3), imap.StoreFlagsAdd, imap.FlagDeleted)
	search := func(cr *imap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.Search(cr, nil).Wait()
		if err != nil {
			t.Fatalf("SEARCH: %v", err)
		}
		return d.AllSeqNums()
	}
	if got := search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}); !slices.Equal(got, []uint32{1}) {
		t.Errorf("SEARCH FLAGGED = %v, want [1]", got)
	}
	if got := search(&imap.SearchCriteria{Flag: []imap.Flag{"$LABEL1"}}); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("SEARCH KEYWORD $LABEL1 = %v, want [1 2]", got)
	}
	if got := search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "MAIL 4"}}}); !slices.Equal(got, []uint32{4}) {
		t.Errorf("SEARCH SUBJECT = %v, want [4]", got)
	}
	if got := search(&imap.SearchCriteria{Body: []string{"body 2"}, Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagDeleted}}}}); !slices.Equal(got, []uint32{2}) {
		t.Errorf("SEARCH BODY = %v, want [2]", got)
	}
	// A second session sees the flags (from dbd, not from the first one).
	c2 := k.loggedIn(nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]imap.Flag{{imap.FlagFlagged, imap.FlagJunk, "$label1", "work"}, {imap.FlagJunk, "$label1", "work"}} {
		got := slices.Clone(msgs[i].Flags)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("second session: flags of %d = %v, want %v", i+1, got, want)
		}
	}
	// EXPUNGE removes the \Deleted mail for good.
	exp, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(exp, []uint32{3}) {
		t.Fatalf("EXPUNGE = %v, %v; want [3]", exp, err)
	}
	c3 := k.loggedIn(nil)
	sd, err := c3.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 3 {
		t.Fatalf("SELECT after EXPUNGE = %+v, %v; want 3 messages", sd, err)
	}
	// The other session learns of the expunge at a NOOP once dbd's watch
	// has brought it the change: it travels as an event, so under load the
	// first NOOP may come before it (seen once in CI under -race).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c2.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		n := c2.Mailbox().NumMessages
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second session after NOOPs for 10 s: %d messages, want 3", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNamespaceAndESearch: NAMESPACE (RFC 2342) and SEARCH RETURN
// (ESEARCH, RFC 4731) as go-imap's client sees them, both advertised.
func TestNamespaceAndESearch(t *testing.T) {
	k := start(t)
	for i := 1; i <= 5; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	for _, cp := range []imap.Cap{imap.CapNamespace, imap.CapESearch} {
		if !c.Caps().Has(cp) {
			t.Errorf("capability %s not advertised", cp)
		}
	}
	ns, err := c.Namespace().Wait()
	if err != nil {
		t.Fatalf("NAMESPACE: %v", err)
	}
	if len(ns.Personal) != 1 || ns.Personal[0] != (imap.NamespaceDescriptor{Prefix: "", Delim: '/'}) || ns.Other != nil || ns.Shared != nil {
		t.Errorf("NAMESPACE = %+v, want one personal namespace \"\" with delimiter /", ns)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	flagged := &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}
	d, err := c.Search(flagged, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatalf("SEARCH RETURN (MIN MAX COUNT): %v", err)
	}
	if d.Min != 2 || d.Max != 4 || d.Count != 2 {
		t.Errorf("SEARCH RETURN (MIN MAX COUNT) FLAGGED = min %d max %d count %d, want 2 4 2", d.Min, d.Max, d.Count)
	}
	all, err := c.UIDSearch(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnAll: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatalf("UID SEARCH RETURN (ALL COUNT): %v", err)
	}
	if all.Count != 5 || len(all.AllUIDs()) != 5 {
		t.Errorf("UID SEARCH RETURN (ALL COUNT) ALL = %+v, want 5 UIDs", all)
	}
	none, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDraft}}, &imap.SearchOptions{ReturnCount: true, ReturnMin: true}).Wait()
	if err != nil || none.Count != 0 || none.Min != 0 {
		t.Errorf("SEARCH RETURN (COUNT MIN) DRAFT = %+v, %v; want count 0 and no MIN", none, err)
	}
}

// TestIMAP4rev2: a client that ENABLEs IMAP4rev2 (RFC 9051) gets the same
// mailbox through go-imap's rev2 answers: SELECT, STATUS with DELETED,
// FETCH, STORE, SEARCH (ESEARCH answers), MOVE and EXPUNGE.
func TestIMAP4rev2(t *testing.T) {
	k := start(t)
	for i := 1; i <= 3; i++ {
		k.deliver(mail(i))
	}
	c := k.loggedIn(nil)
	if !c.Caps().Has(imap.CapIMAP4rev2) {
		t.Fatal("IMAP4rev2 not advertised")
	}
	if _, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatalf("ENABLE IMAP4rev2: %v", err)
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 3 {
		t.Fatalf("SELECT = %+v, %v; want 3 messages", sd, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH BODY.PEEK[] = %v, %v", msgs, err)
	}
	var body []byte
	for _, b := range msgs[0].BodySection {
		body = b.Bytes
	}
	if !strings.Contains(string(body), "body 2") {
		t.Errorf("FETCH 2 BODY[] = %q, want mail 2", body)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil || !slices.Equal(d.AllSeqNums(), []uint32{1}) {
		t.Fatalf("SEARCH DELETED = %v, %v; want [1]", d, err)
	}
	if _, err := c.Move(imap.SeqSetNum(3), "Trash").Wait(); err != nil {
		t.Fatalf("MOVE: %v", err)
	}
	if exp, err := c.Expunge().Collect(); err != nil || !slices.Equal(exp, []uint32{1}) {
		t.Fatalf("EXPUNGE = %v, %v; want [1]", exp, err)
	}
	st, err := c.Status("Trash", &imap.StatusOptions{NumMessages: true, NumDeleted: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 || st.NumDeleted == nil || *st.NumDeleted != 0 {
		t.Fatalf("STATUS Trash (MESSAGES DELETED) = %+v, %v; want 1 and 0", st, err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("INBOX after MOVE and EXPUNGE: %d messages, want 1", n)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Fatal("STORE in EXAMINE succeeded")
	}
	if _, err := c.Expunge().Collect(); err == nil {
		t.Fatal("EXPUNGE in EXAMINE succeeded")
	}
	sec := &imap.FetchItemBodySection{}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 0 {
		t.Fatalf("flags after BODY[] in EXAMINE = %+v, %v; want none", msgs, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestIdleSeesNewMail(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	exists := make(chan uint32, 16)
	c := k.loggedIn(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// Mail that arrives unacknowledged first, as from smtpd, then is
	// acknowledged.
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(mail(2)), false, time.Now()); err != nil {
		t.Fatal(err)
	}
	k.deliver(mail(2))
	select {
	case n := <-exists:
		if n != 2 {
			t.Fatalf("IDLE reported %d messages, want 2", n)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("IDLE reported no new mail within 60s")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// raw is a line-level IMAP conversation for hostile input.
type raw struct {
	t            testing.TB
	c            net.Conn
	br           *bufio.Reader
	lastGreeting string
	// z, once COMPRESS is active (compress_test.go), compresses what send
	// writes.
	z *flate.Writer
}

func (k *kit) raw() *raw {
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	r := &raw{t: k.t, c: c, br: bufio.NewReader(c)}
	r.lastGreeting = r.line()
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	s, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, s)
	}
	return s
}

func (r *raw) send(s string) {
	r.t.Helper()
	if r.z != nil {
		if _, err := r.z.Write([]byte(s)); err != nil {
			r.t.Fatal(err)
		}
		if err := r.z.Flush(); err != nil {
			r.t.Fatal(err)
		}
		return
	}
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// until reads lines until one starts with prefix and returns it.
func (r *raw) until(prefix string) string {
	r.t.Helper()
	for i := 0; i < 1000; i++ {
		if s := r.line(); strings.HasPrefix(s, prefix) {
			return s
		}
	}
	r.t.Fatalf("no line starting with %q", prefix)
	return ""
}

func TestHostileInput(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	r := k.rawLogin()
	r.send("a2 FROBNICATE\r\n")
	if s := r.until("a2 "); !strings.HasPrefix(s, "a2 BAD") {
		t.Errorf("unknown command: %q", s)
	}
	r.send("a3 FETCH 1 (BODY[\r\n")
	if s := r.until("a3 "); !strings.HasPrefix(s, "a3 BAD") && !strings.HasPrefix(s, "a3 NO") {
		t.Errorf("FETCH before SELECT with bad syntax: %q", s)
	}
	r.send("a4 SELECT INBOX\r\n")
	if s := r.until("a4 "); !strings.HasPrefix(s, "a4 OK") {
		t.Fatalf("select: %q", s)
	}
	r.send("a5 FETCH 1:* (FLAGS\r\n")
	if s := r.until("a5 "); !strings.HasPrefix(s, "a5 BAD") {
		t.Errorf("unterminated list: %q", s)
	}
	// A huge literal is refused before any byte of it is sent.
	r.send("a6 APPEND INBOX {99999999999}\r\n")
	if s := r.until("a6 "); !strings.HasPrefix(s, "a6 NO") && !strings.HasPrefix(s, "a6 BAD") {
		t.Errorf("huge APPEND literal: %q", s)
	}
	r.send("a7 SEARCH {99999999}\r\n")
	s, err := r.br.ReadString('\n')
	if err == nil && strings.HasPrefix(s, "+") {
		t.Errorf("huge SEARCH literal invited: %q", s)
	}
	// The server is still up for others.
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("a new session after hostile input: %v", err)
	}
}

// TestClientGoneMidFetch: a client that disconnects while a big FETCH is
// being written does not hurt the server.
func TestClientGoneMidFetch(t *testing.T) {
	k := start(t)
	big := mail(1) + strings.Repeat("x", 1<<20) + "\r\n"
	for i := 0; i < 8; i++ {
		k.deliver(strings.Replace(big, "mail 1", fmt.Sprintf("mail %d", i), 1))
	}
	r := k.raw()
	r.send("a1 LOGIN alice \"correct horse\"\r\na2 SELECT INBOX\r\n")
	r.until("a2 OK")
	r.send("a3 FETCH 1:* BODY[]\r\n")
	r.line() // the first answer line has started
	r.c.Close()
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(8), &imap.FetchOptions{RFC822Size: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].RFC822Size != int64(len(big)) {
		t.Fatalf("FETCH after a client left = %+v, %v", msgs, err)
	}
}

func TestUIDValidityPerStore(t *testing.T) {
	a, b := start(t), start(t)
	var vals []uint32
	for _, k := range []*kit{a, b} {
		c := k.loggedIn(nil)
		sd, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, sd.UIDValidity)
		sd2, err := c.Select("INBOX", nil).Wait()
		if err != nil || sd2.UIDValidity != sd.UIDValidity {
			t.Fatalf("UIDVALIDITY changed between two SELECTs on one store: %v, %v", sd2, err)
		}
	}
	if vals[0] == vals[1] {
		t.Fatalf("two stores gave the same UIDVALIDITY %d", vals[0])
	}
}

var _ = errors.New

// TestManySessions: more selected sessions than dbd allows streams on one
// connection (each follows its mailbox with a watch), and FETCHes that
// read ahead, all at once: every command succeeds.
func TestManySessions(t *testing.T) {
	k := startWith(t, func(c *Config) { c.MaxConnsPerIP = -1 })
	for i := range 20 {
		k.deliver(mail(i))
	}
	const sessions = 100
	clients := make([]*imapclient.Client, sessions)
	for i := range clients {
		clients[i] = k.loggedIn(nil)
		if _, err := clients[i].Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("session %d: select: %v", i, err)
		}
	}
	errs := make(chan error, sessions)
	for i, c := range clients {
		go func() {
			msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
				BodySection: []*imap.FetchItemBodySection{{Peek: true}},
			}).Collect()
			if err == nil && len(msgs) != 20 {
				err = fmt.Errorf("%d mails, want 20", len(msgs))
			}
			if err != nil {
				err = fmt.Errorf("session %d: fetch: %w", i, err)
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestConnectionLimit: a client IP over --max-conns-per-ip gets BYE and is
// closed; a freed slot is given again.
func TestConnectionLimit(t *testing.T) {
	k := startWith(t, func(c *Config) { c.MaxConnsPerIP = 3 })
	var held []*raw
	for range 3 {
		held = append(held, k.raw()) // each read the greeting
	}
	c, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* BYE [UNAVAILABLE] Too many connections from your address") {
		t.Fatalf("fourth connection got %q, %v; want BYE [UNAVAILABLE]", line, err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatal("the refused connection stayed open")
	}
	held[0].send("a LOGOUT\r\n")
	held[0].until("a ")
	// The slot comes back once imapd has closed that connection.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := k.raw()
		greeting := r.lastGreeting
		if strings.HasPrefix(greeting, "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot 30 s after a LOGOUT: %q", greeting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleKeepalive: a quiet IDLE repeats the message count, so the
// connection is never silent for long.
func TestIdleKeepalive(t *testing.T) {
	k := startWith(t, func(c *Config) { c.IdleKeepalive = 100 * time.Millisecond })
	k.deliver(mail(1))
	k.deliver(mail(2))
	r := k.raw()
	r.send(fmt.Sprintf("a LOGIN %s %q\r\n", login, password))
	r.until("a OK")
	r.send("b SELECT INBOX\r\n")
	r.until("b OK")
	r.send("c IDLE\r\n")
	r.until("+ ")
	start := time.Now()
	for range 3 {
		if l := r.line(); l != "* 2 EXISTS\r\n" {
			t.Fatalf("during a quiet IDLE got %q, want * 2 EXISTS", l)
		}
	}
	t.Logf("three keepalives in %v", time.Since(start))
	r.send("DONE\r\n")
	r.until("c OK")
}

// TestHostileCommands: deep nesting, huge sequence sets, long lines and
// malformed literals (TEST-CATALOG items 45-47) each get a tagged answer
// or end the connection; imapd keeps serving.
func TestHostileCommands(t *testing.T) {
	k := start(t)
	for i := range 3 {
		k.deliver(mail(i))
	}
	login := func() *raw {
		r := k.raw()
		r.send("a LOGIN alice \"correct horse\"\r\n")
		r.until("a OK")
		r.send("b SELECT INBOX\r\n")
		r.until("b OK")
		return r
	}
	var set strings.Builder
	for i := range 10000 {
		if i > 0 {
			set.WriteByte(',')
		}
		fmt.Fprint(&set, i*3+1)
	}
	// want: the prefix of the tagged answer. No case may invite a literal
	// (a "+" line).
	cases := []struct{ name, cmd, want string }{
		{"nested parens", "t SEARCH " + strings.Repeat("(", 2000) + "ALL" + strings.Repeat(")", 2000), "t BAD"}, // BAD since 2026-12-03 (NO [SERVERBUG] before)
		// Over 1000 search keys: NO [LIMIT] (session.maxSearchKeys).
		{"nested NOT", "t SEARCH " + strings.Repeat("NOT ", 12000) + "ALL", "t NO [LIMIT]"},
		{"nested OR", "t SEARCH " + strings.Repeat("OR ALL ", 5000) + "ALL", "t NO [LIMIT]"},
		{"whole UID range", "t UID FETCH 1:4294967295 FLAGS", "t OK"},
		{"reversed star", "t FETCH *:1 FLAGS", "t OK"},
		{"zero", "t FETCH 0 FLAGS", "t BAD"}, // BAD since 2026-11-30 (NO [SERVERBUG] before)
		{"too large number", "t FETCH 4294967296 FLAGS", "t BAD"},
		{"bad date", "t SEARCH BEFORE 32-Jan-2020", "t BAD"}, // BAD since 2026-11-30 (NO [SERVERBUG] before)
		{"empty status list", "t STATUS INBOX ()", "t BAD"},  // BAD since 2026-11-30 (OK before)
		{"bad date-time", "t APPEND INBOX \"32-Jan-2020 10:00:00 +0000\" {5}", "t BAD"},
		{"10000-element set", "t FETCH " + set.String() + " FLAGS", "t NO"},
		{"60 KiB line", "t NOOP " + strings.Repeat("x", 60<<10), "t BAD"},
		{"deep section", "t FETCH 1 BODY.PEEK[" + strings.Repeat("1.", 500) + "1]", "t OK"},
		{"negative literal", "t LOGIN {-1}", "t BAD"},
		{"empty literal size", "t LOGIN {}", "t BAD"},
		{"literal over 32 bits", "t LOGIN {4294967296}", "t NO [TOOBIG]"}, // at once (TestRefusedSyncLiteralAnswered)
		{"STORE 5000 flags", "t STORE 1:* +FLAGS (" + strings.TrimSpace(strings.Repeat("\\Seen ", 5000)) + ")", "t OK"},
	}
	for _, c := range cases {
		r := login()
		r.c.SetDeadline(time.Now().Add(30 * time.Second))
		r.send(c.cmd + "\r\n")
		var tagged string
		for {
			l, err := r.br.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(l, "+") {
				t.Errorf("%s: imapd invited the literal: %q", c.name, l)
			}
			if strings.HasPrefix(l, "t ") {
				tagged = l
				break
			}
		}
		if !strings.HasPrefix(tagged, c.want) {
			t.Errorf("%s: answer %.100q, want %q", c.name, tagged, c.want)
		}
	}
	// go-imap answers some client errors as NO [SERVERBUG]; none of them
	// was a panic of ours.
	mfs, err := k.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == "twinmx_imapd_errors_total" && lp.GetValue() == "panic" && m.GetCounter().GetValue() > 0 {
					t.Errorf("%v panics", m.GetCounter().GetValue())
				}
			}
		}
	}
	// Still serving.
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("a new session after hostile commands: %v", err)
	}
}

// TestExpungeSeenByOtherSession (TEST-CATALOG 39/40): session 1 expunges
// mail 1 while session 2 still has it as message 1: session 2's FETCH 1
// gives that mail's bytes or fails, never another mail's; its next NOOP
// reports the EXPUNGE.
func TestExpungeSeenByOtherSession(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	k.deliver(mail(2))
	var mu sync.Mutex
	var expunged []uint32
	c1 := k.loggedIn(nil)
	c2 := k.loggedIn(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
		},
	}})
	for _, c := range []*imapclient.Client{c1, c2} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err == nil {
		if len(msgs) != 1 {
			t.Fatalf("FETCH 1 after another session's EXPUNGE gave %d messages", len(msgs))
		}
		for _, b := range msgs[0].BodySection {
			if string(b.Bytes) != mail(1) {
				t.Fatalf("FETCH 1 after another session's EXPUNGE gave other bytes:\n%s", b.Bytes)
			}
		}
	}
	// The expunge reaches session 2 as a watch event: NOOP until it has
	// (see TestFlagsSearchExpunge).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := c2.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(expunged)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(expunged) != 1 || expunged[0] != 1 {
		t.Fatalf("session 2 was told of expunges %v, want [1]", expunged)
	}
}

// TestConcurrentKeywords (TEST-CATALOG 41): ten sessions add ten distinct
// keywords to the same mail at once; none is lost.
func TestConcurrentKeywords(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	var wg sync.WaitGroup
	for i := range 10 {
		c := k.loggedIn(nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			kw := imap.Flag(fmt.Sprintf("$kw%d", i))
			if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{kw}, Silent: true}, nil).Close(); err != nil {
				t.Errorf("store %s: %v", kw, err)
			}
		})
	}
	wg.Wait()
	c := k.loggedIn(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch flags: %v (%d messages)", err, len(msgs))
	}
	for i := range 10 {
		kw := imap.Flag(fmt.Sprintf("$kw%d", i))
		if !slices.Contains(msgs[0].Flags, kw) {
			t.Errorf("keyword %s lost; flags %v", kw, msgs[0].Flags)
		}
	}
}
