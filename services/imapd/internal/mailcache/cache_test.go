package mailcache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
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
	c, err := New(Config{ParsedBytes: parsed, BodyBytes: body, Metrics: metrics.New(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// body is the mail kept under k, or nil.
func body(c *Cache, k Key) []byte {
	b, ok := c.AppendBody(nil, k)
	if !ok {
		return nil
	}
	return b
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
		if b := body(c, o.k); b != nil {
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

// TestBodyIsCopied: the cache keeps a copy of what it is given, and
// gives out copies: neither the caller's later use of its buffer nor the
// cache's reuse of its memory changes the other's bytes.
func TestBodyIsCopied(t *testing.T) {
	c := newCache(t, 0, 1<<20)
	buf := append(make([]byte, 0, 64<<10), "small mail"...)
	c.KeepBody(Key{Mail: key(1)}, buf)
	copy(buf, "REUSED BUF")
	out, ok := c.AppendBody([]byte("prefix:"), Key{Mail: key(1)})
	if !ok || string(out) != "prefix:small mail" {
		t.Fatalf("AppendBody = %q, %v after the caller reused its buffer, want %q", out, ok, "prefix:small mail")
	}
	// Run the arena round many times: the copy given out stays.
	for i := range 2000 {
		c.KeepBody(Key{Mail: key(100 + i)}, make([]byte, 4000))
	}
	if string(out) != "prefix:small mail" {
		t.Fatalf("the copy given out changed to %q", out)
	}
	if got := c.body.bytes(); got > 1<<20 {
		t.Errorf("kept %d bytes in a 1 MiB arena", got)
	}
}

// TestRingKeepsWhatItSays: mails of random sizes written round and
// round a small arena; after every write each mail the ring still has
// is byte for byte the one written under its key, the newest one is
// there, and the ring keeps most of its arena in use (it drops only
// what the new mail overwrites).
func TestRingKeepsWhatItSays(t *testing.T) {
	const arena = 64 << 10
	c := newCache(t, 0, arena)
	rng := rand.New(rand.NewPCG(1, 2))
	mail := func(i, n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j)
		}
		return b
	}
	sizes := map[int]int{}
	for i := range 5000 {
		n := 1 + rng.IntN(arena/8)
		if i%50 == 0 {
			n = arena / 8 // the largest kept
		}
		sizes[i] = n
		c.KeepBody(Key{Mail: key(i)}, mail(i, n))
		if got := body(c, Key{Mail: key(i)}); !bytes.Equal(got, mail(i, n)) {
			t.Fatalf("mail %d (%d bytes) not kept as written: %d bytes", i, n, len(got))
		}
		for range 5 {
			j := max(0, i-rng.IntN(40))
			if got := body(c, Key{Mail: key(j)}); got != nil && !bytes.Equal(got, mail(j, sizes[j])) {
				t.Fatalf("after mail %d, mail %d comes back changed", i, j)
			}
		}
		if used := c.body.bytes(); used > arena {
			t.Fatalf("after mail %d the ring keeps %d bytes of %d", i, used, arena)
		} else if i > 200 && used < arena/2 {
			t.Fatalf("after mail %d the ring keeps only %d bytes of %d", i, used, arena)
		}
	}
	if c.KeepBody(Key{Mail: key(9999)}, make([]byte, arena/8+1)); body(c, Key{Mail: key(9999)}) != nil {
		t.Error("a mail over an eighth of the arena was kept")
	}
	c.Reset()
	if c.Bytes() != 0 || body(c, Key{Mail: key(4999)}) != nil {
		t.Error("Reset kept mails")
	}
}

// TestEvictionKeepsBound: whatever parsed entries are added, the bytes
// kept stay within the budget and the most recently used entries stay
// (TestRingKeepsWhatItSays is its counterpart for whole mails).
func TestEvictionKeepsBound(t *testing.T) {
	const budget = 64 << 10
	c := newCache(t, budget, budget)
	size := ParsedSize(entry("x", 1000))
	for i := range 1000 {
		c.AddParsed(Key{Mail: key(i)}, entry("x", 1000))
		if got := c.parsed.bytes(); got > budget {
			t.Fatalf("after %d entries the parsed kind keeps %d bytes, over its budget %d", i+1, got, budget)
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
	c.KeepBody(Key{}, []byte("x"))
	if c.Parsed(Key{}) != nil || c.HasBody(Key{}) || body(c, Key{}) != nil || c.WantsParsed() || c.WantsBody() || c.Bytes() != 0 {
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
				if b := body(c, k); b != nil && string(b) != name {
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

// TestBodyBudgetTooLarge: a body budget the ring cannot index is an
// error for the operator (imapd then does not start), not a crash.
func TestBodyBudgetTooLarge(t *testing.T) {
	c, err := New(Config{BodyBytes: 4 << 30, Metrics: metrics.New(prometheus.NewRegistry())})
	if err == nil || c != nil || !strings.Contains(err.Error(), "body cache of 4096 MiB") {
		t.Fatalf("New with a 4 GiB body budget = %v, %v; want an error naming the body cache", c, err)
	}
}
