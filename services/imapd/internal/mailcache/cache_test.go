package mailcache

import (
	"fmt"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/metrics"
)

func newCache(t testing.TB, parsed, body int64) *Cache {
	t.Helper()
	return New(Config{ParsedBytes: parsed, BodyBytes: body, Metrics: metrics.New(prometheus.NewRegistry())})
}

func key(i int) model.Key { return model.KeyOf(model.Mail, fmt.Appendf(nil, "mail %d", i)) }

func entry(subject string, headerLen int) *Parsed {
	return &Parsed{Size: int64(headerLen + 10), Header: make([]byte, headerLen),
		Envelope:  &imap.Envelope{Subject: subject},
		Structure: &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Text: &imap.BodyStructureText{NumLines: 1}}}
}

// TestKeysKeepEntriesApart: an entry is found only under its own key:
// another mail row, another received row (the same mail with other
// Received fields), other dropped fields, or none.
func TestKeysKeepEntriesApart(t *testing.T) {
	c := newCache(t, 1<<20, 1<<20)
	base := Key{Mail: key(1), Received: key(2)}
	others := []struct {
		name string
		k    Key
	}{
		{"other mail", Key{Mail: key(3), Received: key(2)}},
		{"other received row", Key{Mail: key(1), Received: key(4)}},
		{"no received row", Key{Mail: key(1)}},
		{"dropped fields", KeyOf(mailbox.Origin{Mail: key(1), Received: key(2)}, []string{"x-spam"})},
		{"mail and received swapped", Key{Mail: key(2), Received: key(1)}},
	}
	c.AddParsed(base, entry("base", 100))
	c.KeepBody(base, []byte("base bytes"))
	for _, o := range others {
		if p := c.Parsed(o.k); p != nil {
			t.Errorf("%s: Parsed = %q, want nil", o.name, p.Envelope.Subject)
		}
		if b := c.Body(o.k); b != nil {
			t.Errorf("%s: Body = %q, want nil", o.name, b)
		}
	}
	for _, o := range others {
		c.AddParsed(o.k, entry(o.name, 100))
	}
	for _, o := range others {
		if p := c.Parsed(o.k); p == nil || p.Envelope.Subject != o.name {
			t.Errorf("%s: Parsed = %v, want its own entry", o.name, p)
		}
	}
	if p := c.Parsed(KeyOf(mailbox.Origin{Mail: key(1), Received: key(2)}, nil)); p == nil || p.Envelope.Subject != "base" {
		t.Errorf("KeyOf(origin, nil) = %v, want the base entry", p)
	}
}

// TestKeepBodyOwnership: the cache takes a mail's own buffer, but keeps
// a copy of a mail in a much larger buffer (a recycled one), which stays
// the caller's: its later use must not change what the cache holds.
func TestKeepBodyOwnership(t *testing.T) {
	c := newCache(t, 0, 1<<20)
	if !c.KeepBody(Key{Mail: key(1)}, []byte("exact")) {
		t.Error("a mail in a buffer of its size was copied")
	}
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, "small mail"...)
	if c.KeepBody(Key{Mail: key(2)}, buf) {
		t.Fatal("the cache took a 64 KiB buffer for a 10-byte mail")
	}
	copy(buf, "REUSED BUF")
	if got := c.Body(Key{Mail: key(2)}); string(got) != "small mail" {
		t.Fatalf("Body = %q after the caller reused its buffer, want %q", got, "small mail")
	}
	if got := c.body.bytes(); got > 2*(64+entryOverhead) {
		t.Errorf("two small mails charged %d bytes", got)
	}
}

// TestEvictionKeepsBound: whatever is added, the bytes kept stay within
// the budget, the most recently used entries stay, and an entry over an
// eighth of the budget is not kept.
func TestEvictionKeepsBound(t *testing.T) {
	const budget = 64 << 10
	c := newCache(t, budget, budget)
	size := ParsedSize(entry("x", 1000))
	for i := range 1000 {
		c.AddParsed(Key{Mail: key(i)}, entry("x", 1000))
		c.KeepBody(Key{Mail: key(i)}, make([]byte, 1+i*7%4000))
		if got := c.parsed.bytes(); got > budget {
			t.Fatalf("after %d entries the parsed kind keeps %d bytes, over its budget %d", i+1, got, budget)
		}
		if got := c.body.bytes(); got > budget {
			t.Fatalf("after %d entries the body kind keeps %d bytes, over its budget %d", i+1, got, budget)
		}
		// Keep mail 0 in use: it must survive as the least recently
		// added.
		if c.Parsed(Key{Mail: key(0)}) == nil {
			t.Fatalf("mail 0, used after every add, was evicted after %d entries", i+1)
		}
	}
	if got, want := c.parsed.bytes(), budget-size; got < want {
		t.Errorf("parsed kind keeps %d bytes, want at least %d (evicted too much)", got, want)
	}
	if c.Parsed(Key{Mail: key(1)}) != nil {
		t.Error("mail 1, not used since it was added, is still kept")
	}
	if c.Parsed(Key{Mail: key(999)}) == nil {
		t.Error("mail 999, the last added, is not kept")
	}
	if c.KeepBody(Key{Mail: key(5000)}, make([]byte, budget/8)) || c.Body(Key{Mail: key(5000)}) != nil {
		t.Error("a mail over an eighth of the budget was kept")
	}
	c.Reset()
	if c.Bytes() != 0 || c.Parsed(Key{Mail: key(0)}) != nil {
		t.Errorf("after Reset: %d bytes kept, mail 0 found: %v", c.Bytes(), c.Parsed(Key{Mail: key(0)}) != nil)
	}
}

// TestNilCache: no budget, no cache; a nil *Cache answers nothing and
// keeps nothing.
func TestNilCache(t *testing.T) {
	c := newCache(t, 0, 0)
	if c != nil {
		t.Fatalf("New with no budget = %v, want nil", c)
	}
	c.AddParsed(Key{}, entry("x", 1))
	if c.KeepBody(Key{}, []byte("x")) {
		t.Error("a nil cache kept a mail")
	}
	if c.Parsed(Key{}) != nil || c.Body(Key{}) != nil || c.WantsParsed() || c.WantsBody() || c.Bytes() != 0 {
		t.Fatal("a nil cache returned something")
	}
	c.Reset()
}

// TestConcurrentUse: sessions add, look up and evict at once (run with
// -race); every entry found is the one added under its key.
func TestConcurrentUse(t *testing.T) {
	const budget = 256 << 10
	c := newCache(t, budget, budget)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := (i*7 + g*13) % 300
				k := Key{Mail: key(n), Received: key(n + 1000)}
				name := fmt.Sprint(n)
				if p := c.Parsed(k); p != nil && p.Envelope.Subject != name {
					t.Errorf("key of mail %d gave entry %q", n, p.Envelope.Subject)
					return
				}
				if b := c.Body(k); b != nil && string(b) != name {
					t.Errorf("key of mail %d gave bytes %q", n, b)
					return
				}
				c.AddParsed(k, entry(name, 500))
				c.KeepBody(k, []byte(name))
				if i%500 == 0 && g == 0 {
					c.Reset()
				}
			}
		}()
	}
	wg.Wait()
	if c.parsed.bytes() > budget || c.body.bytes() > budget {
		t.Fatalf("kept %d and %d bytes, budget %d each", c.parsed.bytes(), c.body.bytes(), budget)
	}
}

// TestParsedSizeCountsContent: the estimate grows with what an entry
// holds, nested messages included.
func TestParsedSizeCountsContent(t *testing.T) {
	small := entry("s", 100)
	big := entry("s", 100)
	big.Envelope.From = []imap.Address{{Name: string(make([]byte, 5000))}}
	nested := entry("s", 100)
	nested.Structure = &imap.BodyStructureMultiPart{Subtype: "mixed", Children: []imap.BodyStructure{
		&imap.BodyStructureSinglePart{Type: "message", Subtype: "rfc822", MessageRFC822: &imap.BodyStructureMessageRFC822{
			Envelope: &imap.Envelope{Subject: string(make([]byte, 5000))}, BodyStructure: small.Structure}},
	}}
	for _, e := range []*Parsed{big, nested} {
		if ParsedSize(e) < ParsedSize(small)+5000 {
			t.Errorf("ParsedSize = %d, want at least %d", ParsedSize(e), ParsedSize(small)+5000)
		}
	}
}

// TestAddParsedMerges: an entry with the header only, then one with the
// structure, then one with the envelope: the cache keeps one entry with
// all three, charged at its size, and never trades a field for nothing.
func TestAddParsedMerges(t *testing.T) {
	c := newCache(t, 1<<20, 0)
	k := Key{Mail: key(1)}
	header := &Parsed{Size: 10, Header: []byte("Subject: x\r\n\r\n")}
	full := entry("x", 14)
	if got := c.AddParsed(k, header); got != header {
		t.Fatalf("first AddParsed kept %v", got)
	}
	withStructure := &Parsed{Size: 10, Header: header.Header, Structure: full.Structure}
	got := c.AddParsed(k, withStructure)
	if got.Structure == nil || got.Envelope != nil {
		t.Fatalf("after adding the structure: %+v", got)
	}
	got = c.AddParsed(k, &Parsed{Size: 10, Header: header.Header, Envelope: full.Envelope})
	if got.Structure == nil || got.Envelope == nil || c.Parsed(k) != got {
		t.Fatalf("after adding the envelope: %+v (cache has %+v)", got, c.Parsed(k))
	}
	if c.AddParsed(k, header) != got {
		t.Error("adding the header-only entry again replaced the full one")
	}
	if c.parsed.bytes() != ParsedSize(got) {
		t.Errorf("charged %d bytes, the entry's size is %d", c.parsed.bytes(), ParsedSize(got))
	}
}
