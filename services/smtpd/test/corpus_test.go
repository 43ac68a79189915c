package test

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
)

// corpusMail is one message of the shared corpus as an SMTP client sends
// it: without the mbox "From " line, with CRLF line ends.
type corpusMail struct {
	name string
	raw  []byte
}

// loadCorpus reads every message of the shared corpus (proctest.Corpus) in
// its wire form.
func loadCorpus(t testing.TB) []corpusMail {
	t.Helper()
	var out []corpusMail
	for _, m := range proctest.Corpus(t) {
		out = append(out, corpusMail{name: m.Name, raw: proctest.WireForm(m.Raw)})
	}
	return out
}

// TestCorpusStoredByteExact sends every message of the shared corpus
// through smtpd (verdicts from `dbctl autoverdict accept`, --min-copies 1,
// in parallel sessions), requires 250 for each, then reads header, body and
// the acknowledged delivery's received row back from dbd and checks that
// they re-join byte for byte to what was sent, after exactly one leading
// Received field: smtpd's own (issue 3, "Must show").
func TestCorpusStoredByteExact(t *testing.T) {
	t.Parallel()
	corpus := loadCorpus(t)
	s := newSite(t)
	s.Start()
	const rcpt = "corpus@twinmx.test"
	s.addMailbox(rcpt)
	s.autoverdict("accept")
	d := s.startSMTPD(smtpdOptions{DecisionWindow: 20 * time.Second, MinCopies: 1,
		Extra: []string{"--max-conns-per-ip", "-1"}})

	// Two messages of the corpus could be one mail (same header and body,
	// other Received fields): the second is then a retry and links the
	// first delivery. Compare each mail key once.
	first := map[model.Key]int{}
	for i, m := range corpus {
		k := model.NewMailRows(m.raw).MailKey
		if _, dup := first[k]; !dup {
			first[k] = i
		}
	}

	start := time.Now()
	replies := make([]reply, len(corpus))
	errs := make([]error, len(corpus))
	const workers = 8
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var c *smtpConn
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for i := w; i < len(corpus); i += workers {
				if c == nil {
					var r reply
					var err error
					c, r, err = dialSMTP(d.addr, 30*time.Second)
					if err == nil && r.Code == 220 {
						r, err = c.cmd("EHLO corpus.test")
					}
					if err != nil || r.Code != 250 {
						errs[i] = fmt.Errorf("session start: %v %v", r, err)
						if c != nil {
							c.close()
							c = nil
						}
						continue
					}
				}
				rr, r, err := c.transaction("sender@corpus.test", []string{rcpt}, corpus[i].raw)
				if err == nil && len(rr) == 1 && rr[0].Code != 250 {
					r = rr[0]
				}
				replies[i], errs[i] = r, err
				// A fresh session after any failure, and every 100 mails
				// (smtpd limits the commands of one session).
				if err != nil || r.Code >= 400 || i/workers%100 == 99 {
					c.close()
					c = nil
				}
			}
		}(w)
	}
	wg.Wait()
	sent := time.Since(start)

	// Every message must get 250 — the few with bare CRs inside lines too:
	// a bare CR is data, never a line end (RFC 5321 §2.3.8); only a bare CR
	// next to a lone dot is refused as smuggling.
	var failed []string
	bareCR := 0
	for i := range corpus {
		if hasBareCR(corpus[i].raw) {
			bareCR++
		}
		if errs[i] != nil || replies[i].Code != 250 {
			failed = append(failed, fmt.Sprintf("%s (%d bytes): %v %v", corpus[i].name, len(corpus[i].raw), replies[i], errs[i]))
		}
	}
	t.Logf("%d corpus messages hold a bare CR", bareCR)
	if len(failed) > 0 {
		t.Errorf("%d of %d corpus messages did not get 250:\n%s", len(failed), len(corpus), strings.Join(failed[:min(len(failed), 30)], "\n"))
	}

	// Read every accepted mail back (in parallel: thousands of lookups).
	ctx := proctest.Ctx(t, 3*time.Minute)
	var mu sync.Mutex
	var bad []string
	idx := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				m := corpus[i]
				stored, err := s.storedMail(ctx, receiveKey(m.raw, rcpt))
				var problem string
				switch {
				case err != nil:
					problem = err.Error()
				default:
					rp, field, rest := stripOurFields(stored)
					if string(rp) != "Return-Path: <sender@corpus.test>\r\n" || !bytes.HasPrefix(field, []byte("Received: ")) || !bytes.Contains(field, []byte("mx.twinmx.test")) {
						problem = fmt.Sprintf("the stored mail does not start with smtpd's Return-Path and Received fields: %q", stored[:min(len(stored), 200)])
					} else if !bytes.Equal(rest, m.raw) {
						problem = fmt.Sprintf("stored mail differs from the sent one: %s", firstDiff(rest, m.raw))
					}
				}
				if problem != "" {
					mu.Lock()
					bad = append(bad, m.name+": "+problem)
					mu.Unlock()
				}
			}
		}()
	}
	checked := 0
	for i := range corpus {
		if errs[i] == nil && replies[i].Code == 250 && first[model.NewMailRows(corpus[i].raw).MailKey] == i {
			idx <- i
			checked++
		}
	}
	close(idx)
	wg.Wait()
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%d of %d accepted corpus mails were not stored byte-exact:\n%s", len(bad), checked, strings.Join(bad[:min(len(bad), 30)], "\n"))
	}

	// The operator's view of the same rows: dbctl prints the stored
	// header and body of the first mail byte for byte.
	if checked > 0 {
		p := model.Split(corpus[0].raw)
		if got := s.Dbctl(nil, "find", "--raw", "--by-key", model.KeyOf(model.Header, p.Header).String(), "header"); got != string(p.Header) {
			t.Errorf("dbctl find --raw header of %s differs: %s", corpus[0].name, firstDiff([]byte(got), p.Header))
		}
		if got := s.Dbctl(nil, "find", "--raw", "--by-key", model.KeyOf(model.Body, p.Body).String(), "body"); got != string(p.Body) {
			t.Errorf("dbctl find --raw body of %s differs: %s", corpus[0].name, firstDiff([]byte(got), p.Body))
		}
	}
	t.Logf("%d corpus messages (%d distinct mails) sent in %s over %d sessions; %d checked byte-exact",
		len(corpus), len(first), sent.Round(time.Millisecond), workers, checked-len(bad))
}

// firstDiff describes where a and b first differ.
func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	lo := max(0, i-20)
	return fmt.Sprintf("lengths %d and %d, first difference at byte %d: %q vs %q", len(a), len(b), i,
		a[lo:min(len(a), i+20)], b[lo:min(len(b), i+20)])
}

// hasBareCR reports whether b holds a CR not followed by LF.
func hasBareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}
