package test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// corpusMail is one corpus message as an SMTP client would send it: no
// mbox "From " line, CRLF line ends.
type corpusMail struct {
	name string
	raw  []byte
}

// loadCorpus reads the shared corpus (proctest.Corpus) in its wire form.
func loadCorpus(t testing.TB) []corpusMail {
	t.Helper()
	var out []corpusMail
	for _, m := range proctest.Corpus(t) {
		out = append(out, corpusMail{name: m.Name, raw: proctest.WireForm(m.Raw)})
	}
	return out
}

// deliverAll stores mails into box with 8 parallel writers and returns
// the UIDL (first 32 hex digits of the receive key) of each mail. Two
// corpus messages that are one mail (same header and body) are one row.
func deliverAll(t testing.TB, s *site, box string, mails [][]byte) []string {
	t.Helper()
	ctx := ctxFor(t, 10*time.Minute)
	s.Client() // made once, before the writers share it
	uids := make([]string, len(mails))
	errs := make([]error, len(mails))
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(mails); i += workers {
				var k model.Key
				k, errs[i] = s.deliver(ctx, box, mails[i])
				uids[i] = k.String()[:32]
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("deliver mail %d: %v", i, err)
		}
	}
	return uids
}

// TestCorpusByteExact delivers the whole corpus into one mailbox and
// retrieves it over POP3 with a raw Go client: every mail comes back
// byte for byte (plus the CRLF POP3 adds after a mail that does not end
// in one), LIST sizes equal the octets received, and UIDLs are the
// receive keys.
func TestCorpusByteExact(t *testing.T) {
	corpus := loadCorpus(t)
	s := newSite(t, "A", "")
	const box = "corpus@twinmx.test"
	s.user("corpus", "corpus password", box)
	p := s.startPOP3D("")
	mails := make([][]byte, len(corpus))
	for i, m := range corpus {
		mails[i] = m.raw
	}
	uids := deliverAll(t, s, box, mails)
	want := map[string][]byte{}
	for i, u := range uids {
		want[u] = crlf(mails[i])
	}

	c := mustPOP(t, p.addr, "corpus", "corpus password")
	nums, order, err := c.uidl()
	if err != nil {
		t.Fatal(err)
	}
	if len(nums) != len(want) {
		t.Fatalf("UIDL lists %d mails, want %d", len(nums), len(want))
	}
	if _, err := c.cmd("LIST"); err != nil {
		t.Fatal(err)
	}
	listing, err := c.data()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for _, l := range strings.Split(strings.TrimSuffix(string(listing), "\r\n"), "\r\n") {
		var n, sz int
		if _, err := fmtSscan(l, &n, &sz); err != nil {
			t.Fatalf("LIST line %q: %v", l, err)
		}
		sizes[n] = sz
	}
	start := time.Now()
	bad, total := 0, 0
	for _, u := range order {
		n := nums[u]
		got, err := c.retr(n)
		if err != nil {
			t.Fatalf("RETR %d: %v", n, err)
		}
		total += len(got)
		w, ok := want[u]
		switch {
		case !ok:
			t.Errorf("UIDL %s is no delivered mail", u)
			bad++
		case !bytes.Equal(got, w):
			t.Errorf("mail %s differs: got %d octets, want %d", u, len(got), len(w))
			bad++
		case sizes[n] != len(w) && sizes[n]+2 != len(w):
			t.Errorf("LIST %d = %d, RETR sent %d", n, sizes[n], len(got))
			bad++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	el := time.Since(start)
	if err := c.quit(); err != nil {
		t.Fatal(err)
	}
	t.Logf("retrieved %d mails (%d octets) in %s: %.0f mails/s", len(order), total, el.Round(time.Millisecond), float64(len(order))/el.Seconds())
}
