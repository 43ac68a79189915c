package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/proctest"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
	"github.com/twinmx/twinmx/services/imapd/internal/store"
	"github.com/twinmx/twinmx/services/imapd/internal/testkit"
)

// cacheMails are mails whose structure, header and size the cache keeps:
// plain, multipart with an attachment, a nested message, a header with
// no blank line after it, bare LF line ends, encoded words, a Received
// field among the others.
func cacheMails() []string {
	return []string{
		mail(1),
		"Received: from one by x; Sat, 28 Nov 2026 10:00:00 +0000\r\nFrom: =?UTF-8?Q?J=C3=B6rg?= <j@y.example>\r\nTo: a@x.example, \"B, C\" <b@x.example>\r\nCc: group: c@x.example, d@x.example;\r\nSubject: =?ISO-8859-1?Q?caf=E9?= mixed\r\nDate: Sat, 28 Nov 2026 11:00:00 +0100\r\nMessage-ID: <m2@y.example>\r\nIn-Reply-To: <m1@y.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHall=C3=B6chen\r\n--XX\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n",
		"From: a@b.example\r\nSubject: forward\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.example\r\nSubject: inner\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n\r\ninner body\r\n--b--\r\n",
		"From: x@y.example\r\nSubject: no body and no blank line\r\n",
		"From: lf@y.example\nSubject: bare LF\nReceived: from two by x; Sat, 28 Nov 2026 10:00:00 +0000\nDate: Sat, 28 Nov 2026 12:00:00 +0000\n\nline one\nline two\n",
		deepMail(3),
	}
}

// cacheCommands are FETCHes and SEARCHes a cache entry answers, alone or
// with the mail's bytes, and ones it must leave to the bytes.
var cacheCommands = []string{
	"UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)",
	"UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID Content-Type Received)])",
	"UID FETCH 1:* (BODY RFC822.SIZE INTERNALDATE)",
	"UID FETCH 1:* (BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS.NOT (Received Subject)])",
	"UID FETCH 1:* (BODY.PEEK[HEADER]<10.50>)",
	"UID FETCH 1:* RFC822.SIZE",
	"UID FETCH 1:* (ENVELOPE BODY.PEEK[])",
	"UID FETCH 1:* (BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] BODYSTRUCTURE)",
	"UID FETCH 1:* (BINARY.SIZE[1] RFC822.SIZE ENVELOPE)",
	"UID FETCH 1:* (BODY.PEEK[]<0.100>)",
	"FETCH 2 (ENVELOPE BODYSTRUCTURE RFC822.SIZE BODY.PEEK[HEADER])",
	"FETCH 3 (BODY.PEEK[HEADER.FIELDS (Subject)])",
	"UID SEARCH FROM bob",
	"UID SEARCH HEADER Subject mail",
	"UID SEARCH OR SUBJECT forward NOT FROM x LARGER 200",
	"UID SEARCH SENTSINCE 1-Jan-2026 SMALLER 300",
	"UID SEARCH SENTBEFORE 1-Jan-2026",
	"UID SEARCH SUBJECT mail TEXT body",
	"SEARCH HEADER Received two",
}

// session is a raw IMAP connection to addr, logged in as user with INBOX
// selected; do runs a command and returns its untagged answers,
// literals included.
type rawSession struct {
	t    testing.TB
	r    *raw
	next int
}

func openSession(k *kit, addr, user string) *rawSession {
	k.t.Helper()
	saved := k.addr
	k.addr = addr
	r := k.raw()
	k.addr = saved
	s := &rawSession{t: k.t, r: r}
	s.do(fmt.Sprintf("LOGIN %s %q", user, password))
	s.do("SELECT INBOX")
	return s
}

func (s *rawSession) do(cmd string) string {
	s.t.Helper()
	s.next++
	tag := fmt.Sprintf("t%d", s.next)
	s.r.send(tag + " " + cmd + "\r\n")
	var out strings.Builder
	for range 1000000 {
		l := s.r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				s.t.Fatalf("%s: %s", cmd, l)
			}
			return out.String()
		}
		out.WriteString(l)
		// Each literal, then the rest of the line (which may end in
		// another literal).
		for {
			m := literalAtEnd.FindStringSubmatch(l)
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n)
			if _, err := io.ReadFull(s.r.br, buf); err != nil {
				s.t.Fatalf("read literal: %v", err)
			}
			out.Write(buf)
			l = s.r.line()
			out.WriteString(l)
		}
	}
	s.t.Fatalf("no answer to %s", cmd)
	return ""
}

// corpusSample is the first n corpus mails, from $TWINMX_CORPUS or the
// shared folder beside the checkout; none when neither is there, unless
// TWINMX_REQUIRE_CORPUS is set (CI), which fails the test. (Before,
// without $TWINMX_CORPUS, CI ran TestCacheMatchesNoCache on the few
// hand-made mails only, which never make a tiny cache drop a mail
// between a FETCH's lookup and its copy.)
func corpusSample(t *testing.T, n int) []string {
	if os.Getenv("TWINMX_CORPUS") == "" {
		const beside = "../../../../../shared/corpus"
		if _, err := os.Stat(beside); err != nil && os.Getenv("TWINMX_REQUIRE_CORPUS") == "" {
			return nil
		}
		t.Setenv("TWINMX_CORPUS", beside)
	}
	var out []string
	for _, m := range proctest.Corpus(t) {
		if len(out) == n {
			break
		}
		out = append(out, string(m.Raw))
	}
	return out
}

// TestCacheMatchesNoCache: every FETCH answers byte for byte what an
// imapd without a cache answers, from a cache filled by the same FETCH
// (warm) or by another (the structure cached by ENVELOPE serving header
// fields), with whole mails cached too, and with a cache so small that
// it evicts all the time.
func TestCacheMatchesNoCache(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CacheBytes = -1 })
	for _, m := range append(cacheMails(), corpusSample(t, 200)...) {
		k.deliver(m)
	}
	off := openSession(k, k.addr, login)
	want := map[string]string{}
	for _, cmd := range cacheCommands {
		want[cmd] = off.do(cmd)
	}
	for _, v := range []struct {
		name string
		mod  func(*Config)
	}{
		{"default", nil},
		{"whole mails too", func(c *Config) { c.BodyCacheBytes = 8 << 20 }},
		{"tiny", func(c *Config) { c.CacheBytes, c.BodyCacheBytes = 48<<10, 48<<10 }},
	} {
		t.Run(v.name, func(t *testing.T) {
			addr, _, _ := k.runIMAPD(v.mod)
			// Twice forwards (cold, warm), then backwards: each command
			// also meets entries another one made.
			s := openSession(k, addr, login)
			order := append(append(slices.Clone(cacheCommands), cacheCommands...), reversed(cacheCommands)...)
			for i, cmd := range order {
				if got := s.do(cmd); got != want[cmd] {
					t.Fatalf("run %d of %s differs from the answer without a cache:\n%s", i, cmd, firstDiff(want[cmd], got))
				}
			}
		})
	}
}

// TestBodyCacheConcurrentSessions: sessions FETCH (and search) whole mails at once
// through an arena so small that each one's copies drop the mails the
// others looked up a moment before (run with -race): every answer is
// byte-equal to the one without a cache.
func TestBodyCacheConcurrentSessions(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CacheBytes = -1 })
	for _, m := range append(cacheMails(), corpusSample(t, 200)...) {
		k.deliver(m)
	}
	cmds := []string{"UID FETCH 1:* BODY.PEEK[]", "UID FETCH 1:40 (RFC822.SIZE BODY.PEEK[])", "UID FETCH 20:* BODY.PEEK[TEXT]",
		"UID SEARCH TEXT the", "UID SORT (SUBJECT) UTF-8 BODY a"}
	off := openSession(k, k.addr, login)
	want := map[string]string{}
	for _, cmd := range cmds {
		want[cmd] = off.do(cmd)
	}
	addr, _, _ := k.runIMAPD(func(c *Config) { c.BodyCacheBytes = 64 << 10 })
	var sessions []*rawSession
	for range 4 {
		sessions = append(sessions, openSession(k, addr, login))
	}
	var wg sync.WaitGroup
	for g, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				cmd := cmds[(g+i)%len(cmds)]
				if got := s.do(cmd); got != want[cmd] {
					t.Errorf("session %d, run %d of %s differs from the answer without a cache:\n%s", g, i, cmd, firstDiff(want[cmd], got))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// firstDiff shows where two answers part.
func firstDiff(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(i-200, 0)
	return fmt.Sprintf("at byte %d:\nwant …%q\ngot  …%q", i, want[from:min(i+200, len(want))], got[from:min(i+200, len(got))])
}

// TestCacheKeepsDeliveriesApart: one mail row shared by two deliveries
// with other Received fields (two accounts), read again after an earlier
// acknowledgement relinks the receive row to other Received fields, and
// read through a mailbox that drops a header field: each session sees
// its own bytes, never an entry another delivery filled. It fails when
// the cache is keyed by the mail row alone.
func TestCacheKeepsDeliveriesApart(t *testing.T) {
	k := start(t)
	const bob, bobAddr = "bob", "bob@x.example"
	if err := testkit.AddUser(k.ctx, k.admin, bob, password, bobAddr); err != nil {
		t.Fatal(err)
	}
	body := "From: a@y.example\r\nSubject: shared\r\nX-Secret: alice's filter drops this\r\n\r\nthe same body\r\n"
	alice := "Received: from alice.example by mx; Sat, 28 Nov 2026 10:00:00 +0000\r\n" + body
	bobs := "Received: from a.much.longer.name.of.bobs.relay.example by mx; Sat, 28 Nov 2026 10:00:00 +0000\r\n" + body
	if model.NewMailRows([]byte(alice)).MailKey != model.NewMailRows([]byte(bobs)).MailKey {
		t.Fatal("the two deliveries do not share a mail row: the test proves nothing")
	}
	at := time.Now()
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(alice), true, at); err != nil {
		t.Fatal(err)
	}
	if _, err := testkit.Deliver(k.ctx, k.admin, bobAddr, []byte(bobs), true, at); err != nil {
		t.Fatal(err)
	}
	const listing = "FETCH 1 (RFC822.SIZE ENVELOPE BODY.PEEK[HEADER])"
	wantIn := func(who, got, raw string) {
		t.Helper()
		header := raw[:strings.Index(raw, "\r\n\r\n")+4]
		if !strings.Contains(got, fmt.Sprintf("RFC822.SIZE %d ", len(raw))) || !strings.Contains(got, header) {
			t.Fatalf("%s got\n%s\nwant size %d and header\n%s", who, got, len(raw), header)
		}
	}
	wantIn("alice", openSession(k, k.addr, login).do(listing), alice)
	wantIn("bob", openSession(k, k.addr, bob).do(listing), bobs)
	wantIn("alice again", openSession(k, k.addr, login).do(listing), alice)

	// The other site acknowledged the same mail earlier, with its own
	// Received fields: the receive row now links those.
	earlier := "Received: from the.other.site.example by mx2; Sat, 28 Nov 2026 09:59:00 +0000\r\n" + body
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(earlier), true, at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantIn("alice after the relink", openSession(k, k.addr, login).do(listing), earlier)

	// Alice's mailbox drops X-Secret from now on.
	reqs, err := mailbox.SetHeaderFilter(address, "x-secret", true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.admin.Batch(k.ctx, reqs); err != nil {
		t.Fatal(err)
	}
	got := openSession(k, k.addr, login).do(listing)
	if strings.Contains(got, "X-Secret") {
		t.Fatalf("alice's mailbox drops X-Secret, yet a session got\n%s", got)
	}
	wantIn("alice with the filter", got, strings.Replace(earlier, "X-Secret: alice's filter drops this\r\n", "", 1))
}

// TestCacheConcurrentSessions: sessions list the same folder at once
// through a cache that evicts all the time (run with -race); each answer
// is the one without a cache.
func TestCacheConcurrentSessions(t *testing.T) {
	k := startWith(t, func(c *Config) { c.CacheBytes = -1 })
	for i := range 40 {
		k.deliver(mail(i))
	}
	for _, m := range cacheMails() {
		k.deliver(m)
	}
	cmds := cacheCommands[:4]
	off := openSession(k, k.addr, login)
	want := map[string]string{}
	for _, cmd := range cmds {
		want[cmd] = off.do(cmd)
	}
	addr, _, _ := k.runIMAPD(func(c *Config) { c.CacheBytes, c.BodyCacheBytes = 32<<10, 32<<10 })
	sessions := make([]*rawSession, 6)
	for i := range sessions {
		sessions[i] = openSession(k, addr, login)
	}
	var wg sync.WaitGroup
	errs := make(chan string, len(sessions))
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 8 {
				cmd := cmds[(i+j)%len(cmds)]
				if got := s.do(cmd); got != want[cmd] {
					errs <- fmt.Sprintf("session %d, %s:\n%s", i, cmd, firstDiff(want[cmd], got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// deafWatch is a store whose mailbox watches never report: a selected
// session's view keeps the rows it listed at SELECT.
type deafWatch struct{ session.Store }

func (s deafWatch) Watch(ctx context.Context, box model.Key) (store.Events, error) {
	ev, err := s.Store.Watch(ctx, box)
	if err != nil {
		return nil, err
	}
	return deafEvents{ev}, nil
}

type deafEvents struct{ store.Events }

func (e deafEvents) Next(ctx context.Context) (*wire.Row, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCacheKeyIsTheRowsRead: a session whose view links a receive row's
// old received row reads, from dbd, the bytes of the row it links now;
// those are cached under the rows they came from, not under the view's:
// another account's delivery of the same mail with the old Received
// fields must not get them. It fails when entries are keyed by the view.
func TestCacheKeyIsTheRowsRead(t *testing.T) {
	k := startWith(t, func(c *Config) {
		c.wrapStore = func(s session.Store) session.Store { return deafWatch{s} }
	})
	const bob, bobAddr = "bob", "bob@x.example"
	if err := testkit.AddUser(k.ctx, k.admin, bob, password, bobAddr); err != nil {
		t.Fatal(err)
	}
	body := "From: a@y.example\r\nSubject: shared\r\n\r\nthe same body\r\n"
	shared := "Received: from both.example by mx; Sat, 28 Nov 2026 10:00:00 +0000\r\n" + body
	at := time.Now()
	for _, to := range []string{address, bobAddr} {
		if _, err := testkit.Deliver(k.ctx, k.admin, to, []byte(shared), true, at); err != nil {
			t.Fatal(err)
		}
	}
	stale := openSession(k, k.addr, login) // its view links shared's received row
	earlier := "Received: from the.other.site.example by mx2; Sat, 28 Nov 2026 09:59:00 +0000\r\n" + body
	if _, err := testkit.Deliver(k.ctx, k.admin, address, []byte(earlier), true, at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	const listing = "FETCH 1 (RFC822.SIZE ENVELOPE BODY.PEEK[HEADER])"
	if got := stale.do(listing); !strings.Contains(got, "the.other.site.example") {
		t.Fatalf("the stale session got\n%s\nwant the bytes dbd links now (the.other.site.example)", got)
	}
	if got := openSession(k, k.addr, bob).do(listing); !strings.Contains(got, "both.example") {
		t.Fatalf("bob got\n%s\nwant his own delivery's Received field (both.example)", got)
	}
}

// TestCacheHitsAndMisses: the first listing misses and reads dbd, the
// second hits for every mail; a listing after a FETCH of whole mails that
// the cache kept parses the kept bytes once, not at every listing; the
// metrics count it all.
func TestCacheHitsAndMisses(t *testing.T) {
	k := startWith(t, func(c *Config) { c.BodyCacheBytes = 1 << 20 })
	mails := cacheMails()
	for _, m := range mails {
		k.deliver(m)
	}
	n := float64(len(mails))
	s := openSession(k, k.addr, login)
	count := func(name, kind string) float64 {
		return testutil.ToFloat64(mustCounter(t, k.reg, name, kind))
	}
	s.do("UID FETCH 1:* BODY.PEEK[]")
	if got := count("twinmx_imapd_cache_misses_total", "body"); got != n {
		t.Fatalf("first BODY[] of %v mails: %v body misses", n, got)
	}
	const listing = "UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)"
	s.do(listing) // parses the kept bytes
	s.do(listing)
	if got := count("twinmx_imapd_cache_hits_total", "body"); got != n {
		t.Errorf("listings after BODY[]: %v body hits, want %v (one listing's)", got, n)
	}
	if got := count("twinmx_imapd_cache_hits_total", "parsed"); got != n {
		t.Errorf("two listings: %v parsed hits, want %v (the second's)", got, n)
	}
	if got := count("twinmx_imapd_cache_misses_total", "parsed"); got != n {
		t.Errorf("two listings: %v parsed misses, want %v (the first's)", got, n)
	}
	// A SEARCH on header fields and sizes reads nothing either.
	s.do("UID SEARCH OR FROM bob LARGER 100")
	if got := count("twinmx_imapd_cache_hits_total", "parsed"); got != 2*n {
		t.Errorf("SEARCH after the listings: %v parsed hits, want %v", got, 2*n)
	}
}
