package judge

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/decide"
)

const (
	testRcpt = "u@x.test"
	hamMail  = "Subject: meeting notes\n\nthe agenda for the meeting is attached"
	spamMail = "Subject: cheap pills\n\nbuy cheap pills now click here"
)

type fixedModel struct{ m *classify.Model }

func (f fixedModel) Current() *classify.Model { return f.m }

// trainTestModel trains, once for the package, a model that finds
// hamMail clear ham and spamMail spam: not clearly good, so a first
// contact from its sender is greylisted.
var trainTestModel = sync.OnceValue(func() *classify.Model {
	var docs []classify.Doc
	for range 10 {
		docs = append(docs,
			classify.Doc{Tokens: classify.Tokens([]byte(spamMail)), Class: classify.Spam},
			classify.Doc{Tokens: classify.Tokens([]byte(hamMail)), Class: classify.Ham})
	}
	return classify.Train(docs)
})

func testModel(t *testing.T) *classify.Model {
	t.Helper()
	m := trainTestModel()
	if p := m.Score([]byte(hamMail)).Prob; p >= decide.ClearHam {
		t.Fatalf("test model scores the ham %v", p)
	}
	if p := m.Score([]byte(spamMail)).Prob; p < decide.LeanHam {
		t.Fatalf("test model scores the spam %v", p)
	}
	return m
}

// world is one mailbox, a judge with a one-minute greylisting delay, and a
// clock.
type world struct {
	t   *testing.T
	db  *fakeDB
	j   *Judge
	now time.Time
	n   int
	// client is the next attempt's client address (default 192.0.2.7).
	client string
}

func newWorld(t *testing.T, m *classify.Model) *world {
	db := newFakeDB()
	return &world{t: t, db: db, now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		j: New(Config{DB: db, Models: fixedModel{m}, GreyDelay: time.Minute})}
}

// mail stores a new mail from an envelope sender, with its receive row.
func (w *world) mail(body string) model.Key {
	w.n++
	hk := w.db.Put(model.Header, []byte("Message-ID: <"+strings.Repeat("m", w.n)+"@x>\n"), "", 0)
	bk := w.db.Put(model.Body, []byte(body), "", 0)
	mk := w.db.Put(model.Mail, model.MailContent(hk, bk), "", 0)
	w.db.Put(model.Receive, model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(testRcpt))), "", 0)
	return mk
}

// attempt delivers mail mk from from at after since the start, judges it
// and returns the verdict and reason.
func (w *world) attempt(mk model.Key, from string, after time.Duration) (model.Verdict, string) {
	w.t.Helper()
	at := w.now.Add(after)
	client := w.client
	if client == "" {
		client = "192.0.2.7:40000"
	}
	a := model.Attempt{Session: "s", Time: at, Client: client, Helo: "mx.example", TLS: "none",
		From: from, Rcpts: []string{testRcpt}, Size: 10, Mail: mk, HasMail: true}
	tk := w.db.Put(model.ThrowIn, a.Content(), "", 0)
	if err := w.j.judgeAttempt(context.Background(), tk); err != nil {
		w.t.Fatalf("judge %s at +%v: %v", from, after, err)
	}
	rk := model.KeyOf(model.Receive, model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(testRcpt))))
	row, err := w.db.FindKey(context.Background(), model.Receive, rk)
	if err != nil {
		w.t.Fatal(err)
	}
	_, _, v, _ := model.DecodeVerdict(row.State.Col(model.ColVerdict))
	k, ok := model.LatestReason(row.State)
	if !ok {
		w.t.Fatalf("no reason for %s", from)
	}
	r, err := w.db.FindKey(context.Background(), model.Text, k)
	if err != nil {
		w.t.Fatal(err)
	}
	reason, _ := model.ParseReason(r.Content)
	return v, reason
}

// variants are pairs of envelope senders of one sender: a second mail
// from the second must find what the first earned.
var variants = []struct{ name, first, second string }{
	{"batv prvs", "prvs=1234abcdef=alice@orig.example", "prvs=2345bcdefa=alice@orig.example"},
	{"batv msprvs1", "msprvs1=19827s9dJ=alice@orig.example", "msprvs1=2a9f00Qx1=alice@orig.example"},
	{"batv and plain", "alice@orig.example", "btv1==0678a1f3a1c==Alice@Orig.Example"},
	{"verp bulk", "bounce-123456-789@mail.example", "bounce-123999-790@mail.example"},
	{"verp ezmlm", "list-return-41-u=x.test@lists.example", "list-return-42-u=x.test@lists.example"},
	{"sub-address", "alice+1203@orig.example", "alice+1204@orig.example"},
	{"srs forwarded", "SRS0=AbCd=TT=orig.example=alice@fwd.example", "SRS0=xYz1=UU=orig.example=alice@fwd.example"},
	{"srs and direct", "SRS1=QqQq=fwd1.example==AbCd=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
}

// TestGreyVariants: once a sender passed greylisting, a new mail from
// another BATV/VERP/SRS form of it is not greylisted again; another
// sender still is.
func TestGreyVariants(t *testing.T) {
	for _, tt := range variants {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, nil) // no model: every mail is unsure, so a first contact is greylisted
			m1 := w.mail("one")
			if v, r := w.attempt(m1, tt.first, 0); v != model.Retry {
				t.Fatalf("first contact = %v (%s), want retry", v, r)
			}
			if v, r := w.attempt(m1, tt.first, 2*time.Minute); v != model.Accept {
				t.Fatalf("retry after the delay = %v (%s), want accept", v, r)
			}
			if v, r := w.attempt(w.mail("two"), tt.second, time.Hour); v != model.Accept {
				t.Errorf("second mail from %s = %v (%s), want accept without greylisting", tt.second, v, r)
			}
			if v, _ := w.attempt(w.mail("three"), "bob@orig.example", time.Hour); v != model.Retry {
				t.Errorf("another sender = %v, want retry", v)
			}
		})
	}
}

// TestKnownVariants: a sender whose clear mail was accepted is a known
// correspondent under every BATV/VERP/SRS form of it (its spam-looking
// mail is accepted as "known correspondent"); another sender is not.
func TestKnownVariants(t *testing.T) {
	m := testModel(t)
	for _, tt := range variants {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, m)
			if v, r := w.attempt(w.mail(hamMail), tt.first, 0); v != model.Accept {
				t.Fatalf("clear ham = %v (%s), want accept", v, r)
			}
			if v, r := w.attempt(w.mail(spamMail), tt.second, time.Hour); v != model.Accept || !strings.Contains(r, "known correspondent") {
				t.Errorf("second mail from %s = %v (%s), want accept as known correspondent", tt.second, v, r)
			}
			if v, r := w.attempt(w.mail(spamMail), "bob@orig.example", time.Hour); v != model.Retry {
				t.Errorf("spam from another sender = %v (%s), want retry", v, r)
			}
		})
	}
}

// TestKnownLegacyKey: a correspondent known under its raw address (rows
// written before 2026-12-03) stays known, and the mail that finds it
// writes the normalised row.
func TestKnownLegacyKey(t *testing.T) {
	w := newWorld(t, testModel(t))
	const from = "Alice+News@orig.example"
	w.db.Put(model.Text, knownContent(testRcpt, strings.ToLower(from)), colKnown, 1)
	if v, r := w.attempt(w.mail(spamMail), from, 0); v != model.Accept || !strings.Contains(r, "known correspondent") {
		t.Fatalf("mail from a legacy known correspondent = %v (%s), want accept as known", v, r)
	}
	if w.db.Col(model.Text, knownContent(testRcpt, "alice@orig.example"), colKnown) == 0 {
		t.Error("the normalised known row was not written")
	}
}

// TestGreyLegacyKey: a triplet passed under its raw address stays passed,
// and is marked passed under its normalised key.
func TestGreyLegacyKey(t *testing.T) {
	w := newWorld(t, nil)
	const from = "bounce-77@mail.example"
	w.db.Put(model.RDNS, greyContent(Network("192.0.2.7"), from, testRcpt), colPassed, 1)
	if v, r := w.attempt(w.mail("one"), from, 0); v != model.Accept {
		t.Fatalf("mail of a legacy passed triplet = %v (%s), want accept", v, r)
	}
	if w.db.Col(model.RDNS, greyContent(Network("192.0.2.7"), "bounce-#@mail.example", testRcpt), colPassed) == 0 {
		t.Error("the normalised greylisting row was not marked passed")
	}
	// Another tag of the same sender now passes through the new row.
	if v, r := w.attempt(w.mail("two"), "bounce-78@mail.example", time.Hour); v != model.Accept {
		t.Errorf("second mail = %v (%s), want accept", v, r)
	}
}

// TestGreyRetryLegacyFirst: a first contact asked to retry before the
// upgrade (its first.inv under the raw key) still counts its delay from
// then.
func TestGreyRetryLegacyFirst(t *testing.T) {
	w := newWorld(t, nil)
	const from = "alice+x@orig.example"
	m1 := w.mail("one")
	if v, _ := w.attempt(m1, from, 0); v != model.Retry {
		t.Fatalf("first contact = %v, want retry", v)
	}
	// An earlier first contact recorded under the raw key.
	first := w.now.Add(-time.Hour)
	w.db.Put(model.RDNS, greyContent(Network("192.0.2.7"), from, testRcpt), colFirstInv, uint64(1<<32-1)-uint64(model.Epoch(first)))
	if f, ok, err := w.j.greyFirst(context.Background(), model.Attempt{Client: "192.0.2.7:1", From: from}, testRcpt); err != nil || !ok || !f.Equal(time.Unix(int64(model.Epoch(first)), 0)) {
		t.Errorf("greyFirst = %v, %v, %v; want %v", f, ok, err, first)
	}
}

// TestListVariants: list entries match the normalised sender too, the
// envelope address's own entry decides first, and a block entry is never
// outweighed by an allow entry that only a normalised form matched.
func TestListVariants(t *testing.T) {
	const srs = "SRS0=AbCd=TT=orig.example=alice@fwd.example"
	tests := []struct {
		name    string
		entries map[string]uint64
		from    string
		want    model.Verdict
		what    string
	}{
		{"allow original, srs", map[string]uint64{"alice@orig.example": ListAllow}, srs, model.Accept, "allow list: sender alice@orig.example"},
		{"allow original, batv", map[string]uint64{"alice@orig.example": ListAllow}, "prvs=1234abcdef=alice@orig.example", model.Accept, "allow list: sender alice@orig.example"},
		{"allow original domain, srs", map[string]uint64{"@orig.example": ListAllow}, srs, model.Accept, "allow list: sender @orig.example"},
		{"block original, batv", map[string]uint64{"alice@orig.example": ListBlock}, "prvs=1234abcdef=alice@orig.example", model.Reject, "block list: sender alice@orig.example"},
		{"block original domain, srs", map[string]uint64{"@orig.example": ListBlock}, srs, model.Reject, "block list: sender @orig.example"},
		{"block forwarder beats allow original", map[string]uint64{"alice@orig.example": ListAllow, "@fwd.example": ListBlock}, srs, model.Reject, "block list: sender @fwd.example"},
		{"block original beats allow forwarder", map[string]uint64{"@fwd.example": ListAllow, "@orig.example": ListBlock}, srs, model.Reject, "block list: sender @orig.example"},
		{"block domain beats allow of batv original", map[string]uint64{"alice@orig.example": ListAllow, "@orig.example": ListBlock}, "prvs=1234abcdef=alice@orig.example", model.Reject, "block list: sender @orig.example"},
		{"own address entry decides", map[string]uint64{srs: ListAllow, "@fwd.example": ListBlock, "alice@orig.example": ListBlock}, srs, model.Accept, "allow list: sender " + strings.ToLower(srs)},
		{"plain address as before", map[string]uint64{"alice@orig.example": ListAllow, "@orig.example": ListBlock}, "alice@orig.example", model.Accept, "allow list: sender alice@orig.example"},
		{"removed entry", map[string]uint64{"alice@orig.example": ListRemoved}, srs, model.Retry, ""},
	}
	m := testModel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, m)
			for s, kind := range tt.entries {
				w.db.Put(model.Text, ListContent(testRcpt, s), colList, ListValue(w.now.Add(-time.Hour), kind))
			}
			v, r := w.attempt(w.mail(spamMail), tt.from, 0)
			if v != tt.want || !strings.Contains(r, tt.what) {
				t.Errorf("mail from %s = %v (%s), want %v (%s)", tt.from, v, r, tt.want, tt.what)
			}
		})
	}
}

func TestListCandidates(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"Alice@Orig.Example", []string{"alice@orig.example", "@orig.example"}},
		{"prvs=1234abcdef=alice@orig.example", []string{"prvs=1234abcdef=alice@orig.example", "alice@orig.example", "@orig.example"}},
		{"SRS0=AbCd=TT=orig.example=alice@fwd.example", []string{"srs0=abcd=tt=orig.example=alice@fwd.example", "alice@orig.example", "@fwd.example", "@orig.example"}},
		{"postmaster", []string{"postmaster"}},
	} {
		if got := listCandidates(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("listCandidates(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSenderKeys(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                   {""},
		"Alice@Orig.Example":                 {"alice@orig.example"},
		"prvs=1234abcdef=Alice@orig.example": {"alice@orig.example", "prvs=1234abcdef=alice@orig.example"},
	} {
		if got := senderKeys(in); !slices.Equal(got, want) {
			t.Errorf("senderKeys(%q) = %q, want %q", in, got, want)
		}
	}
}
