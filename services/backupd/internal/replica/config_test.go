package replica

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

func TestValidate(t *testing.T) {
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Each site its own dbd: its own address and key.
	sites := map[string]Site{}
	site := func(n string) Site {
		if s, ok := sites[n]; ok {
			return s
		}
		k, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s := Site{Name: n, Addr: fmt.Sprintf("127.0.0.1:%d", 7400+len(sites)), Server: k.Public}
		sites[n] = s
		return s
	}
	with := func(s Site, f func(*Site)) Site { f(&s); return s }
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, all must appear
	}{
		{"ok", Config{Sites: []Site{site("A"), site("B")}, Key: kp}, nil},
		{"three", Config{Sites: []Site{site("A"), site("B"), site("c_3")}, Key: kp, MinCopies: 3}, nil},
		{"one site", Config{Sites: []Site{site("A")}, Key: kp}, []string{"need at least 2"}},
		{"twice", Config{Sites: []Site{site("A"), site("a")}, Key: kp}, []string{"listed twice"}},
		{"bad names", Config{Sites: []Site{site("a-b"), site(strings.Repeat("x", 28))}, Key: kp},
			[]string{"only letters", "1 to 27"}},
		{"no key, no addr", Config{Sites: []Site{{Name: "A", Server: kp.Public}, site("B")}},
			[]string{"key is required", "address is required"}},
		{"copies", Config{Sites: []Site{site("A"), site("B")}, Key: kp, MinCopies: 3}, []string{"MinCopies 3"}},
		// One dbd under two names would count as two sites, and a mail
		// on it alone would be marked backed up.
		{"same address", Config{Sites: []Site{site("A"), with(site("B"), func(s *Site) { s.Addr = site("A").Addr })}, Key: kp},
			[]string{`sites "A" and "B" have the same address`}},
		{"same address, case", Config{Sites: []Site{with(site("A"), func(s *Site) { s.Addr = "db.example:7400" }),
			with(site("B"), func(s *Site) { s.Addr = "DB.example:7400" })}, Key: kp},
			[]string{`sites "A" and "B" have the same address`}},
		{"same key", Config{Sites: []Site{site("A"), with(site("B"), func(s *Site) { s.Server = site("A").Server })}, Key: kp},
			[]string{`sites "A" and "B" have the same public key`}},
		{"bad address", Config{Sites: []Site{site("A"), with(site("B"), func(s *Site) { s.Addr = "db-b" })}, Key: kp},
			[]string{`site "B": address "db-b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.applyDefaults()
			err := cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

func TestCursorName(t *testing.T) {
	n := CursorName("SiteA", "b")
	if n != "repl.sitea-to-b" {
		t.Fatalf("CursorName = %q", n)
	}
	long := strings.Repeat("x", maxSiteName)
	if err := model.CheckName(CursorName(long, long)); err != nil {
		t.Fatalf("longest cursor name is invalid: %v", err)
	}
}

func TestParseSite(t *testing.T) {
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "dbd")
	if err := wire.WriteKeyFiles(key, kp); err != nil {
		t.Fatal(err)
	}
	pub := key + ".pub"
	for _, in := range []string{"", "A", "A=host:1", "=h:1,f", "A=,f",
		// Malformed addresses and names, with a key file that loads, and
		// a missing key file: each a clear error at start, not a dial
		// that fails forever.
		"A=host,PUB", "A=host:,PUB", "A=host:0,PUB", "A=host:65536,PUB", "A=host:http,PUB", "A=[::1,PUB",
		"A=::1:7400,PUB", "A= host:1,PUB", "a-b=host:1,PUB", "A=127.0.0.1:7400,/nonexistent/dbd.pub"} {
		in = strings.ReplaceAll(in, "PUB", pub)
		if _, err := ParseSite(in); err == nil {
			t.Errorf("ParseSite(%q) = nil error, want one", in)
		}
	}
	for _, addr := range []string{"127.0.0.1:7400", "[2001:db8::7]:7301", "db-a.example.org:65535"} {
		s, err := ParseSite("Site_1=" + addr + "," + pub)
		if err != nil {
			t.Errorf("ParseSite(%s) = %v", addr, err)
			continue
		}
		if s.Name != "Site_1" || s.Addr != addr || s.Server != kp.Public {
			t.Errorf("ParseSite(%s) = %+v", addr, s)
		}
	}
}

// FuzzParseSite: parseSiteSpec never panics, and what it accepts is a
// valid site name, a dialable HOST:PORT and a file name, which put
// together again parse to the same fields.
func FuzzParseSite(f *testing.F) {
	for _, s := range []string{"A=127.0.0.1:7400,/etc/twinmx/keys/dbd-a.pub", "B=[2001:db8::7]:7301,k.pub",
		"A=host,f", "A=host:99999,f", "=h:1,f", "A=h:1,", "a-b=h:1,f", "A=h:1,f,g", "A==h:1,f", "A=[::1]:1,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name, addr, pub, err := parseSiteSpec(v)
		if err != nil {
			return
		}
		if err := checkSiteName(name); err != nil {
			t.Fatalf("parseSiteSpec(%q) accepted name %q: %v", v, name, err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" || strings.ContainsAny(host, " \t") {
			t.Fatalf("parseSiteSpec(%q) accepted address %q", v, addr)
		}
		if pub == "" {
			t.Fatalf("parseSiteSpec(%q) accepted an empty key file name", v)
		}
		n2, a2, p2, err := parseSiteSpec(name + "=" + addr + "," + pub)
		if err != nil || n2 != name || a2 != addr || p2 != pub {
			t.Fatalf("round trip of %q: %q %q %q %v", v, n2, a2, p2, err)
		}
	})
}

// TestTrackerCursor: the stored cursor never passes an unsettled receive
// row, and rises when the marker settles it.
func TestTrackerCursor(t *testing.T) {
	tr := newTracker()
	tr.reset(10)
	k1, k2 := model.Key{1}, model.Key{2}
	if got := tr.cursorFor(20); got != 20 {
		t.Fatalf("cursorFor(20) with nothing pending = %d, want 20", got)
	}
	tr.mergedUpTo(20, []pendingRecv{{key: k1, stamp: 15}, {key: k2, stamp: 18}})
	if got := tr.floor(); got != 14 {
		t.Fatalf("floor with receives at 15 and 18 = %d, want 14", got)
	}
	if got := tr.cursorFor(30); got != 14 {
		t.Fatalf("cursorFor(30) = %d, want 14", got)
	}
	tr.settle(k1)
	if got := tr.floor(); got != 17 {
		t.Fatalf("floor after settling 15 = %d, want 17", got)
	}
	tr.untracked(k2, 18)
	if got := tr.floor(); got != 17 {
		t.Fatalf("floor with 18 untracked = %d, want 17", got)
	}
	tr.reset(17)
	tr.mergedUpTo(25, nil)
	if got := tr.floor(); got != 25 {
		t.Fatalf("floor after a new session = %d, want 25", got)
	}
}

func TestLagTracker(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(5, t0)
	l.seen(9, t0.Add(time.Second))
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 9 || secs != 3 {
		t.Fatalf("values = %d, %v; want 9, 3", rows, secs)
	}
	l.done(5)
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 4 || secs != 2 {
		t.Fatalf("after merging 5: values = %d, %v; want 4, 2", rows, secs)
	}
	l.done(9)
	if rows, secs := l.values(t0.Add(3 * time.Second)); rows != 0 || secs != 0 {
		t.Fatalf("caught up: values = %d, %v; want 0, 0", rows, secs)
	}
}

// TestLagTrackerStampGap: the source restarted, and its stamps jumped from
// 9 to above 1,000,000 (wire.Stamps); the lag in rows counts changes, not
// the stamps of the gap.
func TestLagTrackerStampGap(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(9, t0)
	l.done(6)
	l.status(wire.Stamps{Last: 1000004, Before: 9, Floor: 1000000}, t0.Add(time.Second))
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 3+4 {
		t.Fatalf("values across the gap = %d rows, want 7", rows)
	}
	l.done(1000001)
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 3 {
		t.Fatalf("after merging into the new run: %d rows, want 3", rows)
	}
}

// TestLagTrackerRowBound: a source restarted before has stamps of earlier
// runs that the gap figures do not describe, so a cursor of 0 (the
// direction never replicated) was behind by every microsecond since 1970.
// The rows at the status, plus one a stamp since, bound the lag.
func TestLagTrackerRowBound(t *testing.T) {
	const us = 1_796_000_000_000_000
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.status(wire.Stamps{Last: us + 10, Before: us - 50, Floor: us, Rows: 30}, t0)
	l.start(0, t0)
	if rows, _ := l.values(t0.Add(time.Second)); rows != 30 {
		t.Fatalf("cursor 0: %d rows behind, want the 30 the source holds", rows)
	}
	l.seen(us+15, t0.Add(time.Second)) // 5 stamps, at most 5 rows more
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 35 {
		t.Fatalf("after 5 more stamps: %d rows behind, want 35", rows)
	}
	l.done(us + 12)
	if rows, _ := l.values(t0.Add(2 * time.Second)); rows != 3 {
		t.Fatalf("merged into this run: %d rows behind, want 3", rows)
	}
}

// TestLagTrackerCursorBack: a session reads a cursor below what was
// merged (the destination is a restored copy): the changes above it count
// again, their age from the session's start.
func TestLagTrackerCursorBack(t *testing.T) {
	var l lagTracker
	t0 := time.Unix(1000, 0)
	l.seen(9, t0)
	l.start(9, t0)
	if rows, secs := l.values(t0.Add(time.Second)); rows != 0 || secs != 0 {
		t.Fatalf("caught up: values = %d, %v; want 0, 0", rows, secs)
	}
	l.start(4, t0.Add(2*time.Second))
	if rows, secs := l.values(t0.Add(5 * time.Second)); rows != 5 || secs != 3 {
		t.Fatalf("cursor back to 4: values = %d, %v; want 5, 3", rows, secs)
	}
	l.seen(12, t0.Add(6*time.Second))
	l.done(9)
	if rows, secs := l.values(t0.Add(7 * time.Second)); rows != 3 || secs != 1 {
		t.Fatalf("merged up to 9: values = %d, %v; want 3, 1", rows, secs)
	}
}

// TestLagCollectorUnknown: a pump that read the source's status but not
// yet the destination's cursor (the destination unreachable since backupd
// started), or the cursor but no stamp of the source, has no lag samples.
// The first used to export the source's whole stamp, about 1.8e15, as
// lag_rows, and the time since its first status as lag_seconds.
func TestLagCollectorUnknown(t *testing.T) {
	ab := &pump{src: Site{Name: "A"}, dst: Site{Name: "B"}}
	ba := &pump{src: Site{Name: "B"}, dst: Site{Name: "A"}}
	c := newLagCollector([]*pump{ab, ba})
	const floor = 1_796_000_000_000_000
	t0 := time.Now().Add(-time.Minute)
	// The source restarted: its last run's stamps end 5 s below its floor.
	ab.lag.status(wire.Stamps{Last: floor + 100, Before: floor - 5_000_000, Floor: floor}, t0)
	ba.lag.start(7, t0)
	if got := lagSamples(t, c); len(got) != 0 {
		t.Fatalf("before any pump read both cursor and stamps: samples %v, want none", got)
	}

	ab.lag.start(floor+90, t0.Add(time.Second))
	got := lagSamples(t, c)
	if len(got) != 2 || got["lag_rows A B"] != 10 {
		t.Fatalf("A→B known, B→A not: samples %v, want only A→B with 10 rows", got)
	}
	// The changes above the cursor were known at the status, a minute ago.
	if s := got["lag_seconds A B"]; s < 59 || s > 3600 {
		t.Errorf("A→B lag_seconds = %v, want about 60", s)
	}

	ab.lag.done(floor + 100)
	ba.lag.seen(7, t0)
	want := map[string]float64{"lag_rows A B": 0, "lag_seconds A B": 0, "lag_rows B A": 0, "lag_seconds B A": 0}
	if got := lagSamples(t, c); !maps.Equal(got, want) {
		t.Fatalf("both caught up: samples %v, want %v", got, want)
	}
}

// lagSamples scrapes c into "lag_rows FROM TO" -> value.
func lagSamples(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			name := strings.TrimPrefix(mf.GetName(), "twinmx_backupd_")
			out[name+" "+l["from"]+" "+l["to"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestQueueBounds(t *testing.T) {
	q := newQueue(100 + 2*rowOverhead)
	big := &wire.Row{Content: make([]byte, 500+2*rowOverhead)}
	if err := q.put(t.Context(), big); err != nil {
		t.Fatal(err) // a row over the bound fits an empty queue
	}
	// The queue is over its bound: the next put waits.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	err := q.put(ctx, &wire.Row{Content: make([]byte, 40)})
	cancel()
	if err == nil {
		t.Fatal("put into a full queue did not wait")
	}
	if got := q.take(10, 1000); len(got) != 1 || got[0] != big {
		t.Fatalf("take = %d rows, want the big one alone", len(got))
	}
	for range 2 {
		if err := q.put(t.Context(), &wire.Row{Content: make([]byte, 40)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := q.take(10, 50); len(got) != 1 {
		t.Fatalf("take(10, 50) of two 40-byte rows = %d rows, want 1", len(got))
	}
	if got := q.take(10, 50); len(got) != 1 {
		t.Fatalf("second take = %d rows, want 1", len(got))
	}
	if got := q.take(10, 50); len(got) != 0 {
		t.Fatalf("take of an empty queue = %d rows", len(got))
	}
}

// TestQueueBoundsRowsWithoutContent: rows without content (a peer's
// merges coming back excluded, a restored site's backlog of them) count
// against the queue's bound too. They used to cost nothing, and the
// reader queued the whole backlog while the merger fell behind.
func TestQueueBoundsRowsWithoutContent(t *testing.T) {
	const bound = 64 << 10
	q := newQueue(bound)
	// A cancelled context: put takes a row while there is room and fails
	// instead of waiting for it.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	state := model.State{Cols: map[string]uint64{model.ColBackedUp: model.FlagSet}}
	n := 0
	for ; n < 1_000_000; n++ {
		r := &wire.Row{Table: model.Body, Key: model.Key{byte(n), byte(n >> 8), byte(n >> 16)}, Size: 10 << 20, State: state}
		if q.put(ctx, r) != nil {
			break
		}
	}
	if n == 0 || n > bound/rowOverhead+1 {
		t.Fatalf("a %d-byte queue took %d rows without content, want 1 to %d", bound, n, bound/rowOverhead+1)
	}
	// Taking rows makes room again.
	if got := q.take(10, 1<<20); len(got) != 10 {
		t.Fatalf("take = %d rows, want 10", len(got))
	}
	for i := range 10 {
		if err := q.put(ctx, &wire.Row{State: state}); err != nil {
			t.Fatalf("put %d after take: %v", i, err)
		}
	}
	if q.put(ctx, &wire.Row{State: state}) == nil {
		t.Fatal("the queue took more than it gave back")
	}
}

// TestMarkSiteKeepsConnectionOnAnswer: a probe refused by dbd (an answer,
// wrapped by probe) keeps the connection and the site in rounds; a
// failure that is no answer drops both for a while.
func TestMarkSiteKeepsConnectionOnAnswer(t *testing.T) {
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Key: kp}
	dials := 0
	s := &markSite{site: Site{Name: "A", Addr: "127.0.0.1:1", Server: kp.Public}, cfg: &cfg,
		newClient: func(st Site) (*client.Client, error) {
			dials++
			return client.New(client.Config{Addr: st.Addr, Static: kp, Server: st.Server})
		}}
	if s.get() == nil {
		t.Fatal("no client")
	}
	s.failed(fmt.Errorf("probe: %w", &wire.Error{Code: wire.CodeForbidden, Msg: "no"}))
	if s.get() == nil || dials != 1 {
		t.Fatalf("after a refusal: site down or redialled (%d dials)", dials)
	}
	s.failed(fmt.Errorf("probe: %w", context.DeadlineExceeded))
	if s.get() != nil {
		t.Fatal("after a timeout the site is still in rounds")
	}
	s.drop()
}

// TestJitter: the wait before a reconnect lies between half the backoff
// and all of it, and varies, so that pumps failing together do not
// redial together.
func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 100 * time.Millisecond, 5 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 100 {
			w := jitter(d)
			if w < d/2 || w > d {
				t.Fatalf("jitter(%v) = %v, want %v to %v", d, w, d/2, d)
			}
			seen[w] = true
		}
		if len(seen) < 2 {
			t.Errorf("jitter(%v) gave one value in 100 draws", d)
		}
	}
}
