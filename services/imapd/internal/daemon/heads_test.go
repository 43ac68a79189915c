package daemon

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/imapd/internal/session"
)

// countHeads is a store that counts the read-aheads of heads.
type countHeads struct {
	session.Store
	n *atomic.Int32
}

func (s countHeads) ReadAheadHeads(ctx context.Context, ms []mailbox.Message, drops [][]string, limit int, timeout time.Duration) *mailbox.Ahead {
	s.n.Add(1)
	return s.Store.ReadAheadHeads(ctx, ms, drops, limit, timeout)
}

// headsCommands are listings a header and a size answer.
var headsCommands = []string{
	"UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References In-Reply-To Content-Type Received)])",
	"UID FETCH 1:* (ENVELOPE RFC822.SIZE)",
	"UID FETCH 1:* (BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS.NOT (Received Subject)] RFC822.HEADER)",
	"UID FETCH 1:* (BODY.PEEK[HEADER]<10.50> RFC822.SIZE)",
}

// TestHeadsMatchWholeMails: a listing of many mails reads their heads
// only (no bodies from dbd), and answers byte for byte what FETCHes of
// one mail each answer, which read the whole mail; with no header filter
// and with one that drops Received and Subject fields. A FETCH of
// BODYSTRUCTURE still reads whole mails. Without a cache, so every
// FETCH reads.
func TestHeadsMatchWholeMails(t *testing.T) {
	var heads atomic.Int32
	k := startWith(t, func(c *Config) {
		c.CacheBytes = -1
		c.wrapStore = func(s session.Store) session.Store { return countHeads{s, &heads} }
	})
	for _, m := range append(append(cacheMails(), headsMails...), corpusSample(t, 300)...) {
		k.deliver(m)
	}
	for _, drop := range []string{"", "received", "subject"} {
		if drop != "" {
			reqs, err := mailbox.SetHeaderFilter(address, drop, true, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.admin.Batch(k.ctx, reqs); err != nil {
				t.Fatal(err)
			}
		}
		s := openSession(k, k.addr, login)
		uids := strings.Fields(strings.TrimPrefix(strings.TrimSpace(s.do("UID SEARCH ALL")), "* SEARCH"))
		if len(uids) < len(cacheMails())+len(headsMails) {
			t.Fatalf("%d mails listed", len(uids))
		}
		for _, cmd := range headsCommands {
			before := heads.Load()
			got := s.do(cmd)
			if heads.Load() == before {
				t.Fatalf("%s did not read heads", cmd)
			}
			var want strings.Builder
			for _, uid := range uids {
				want.WriteString(s.do(strings.Replace(cmd, "1:*", uid, 1)))
			}
			if got != want.String() {
				t.Fatalf("drop %q: %s differs from the FETCHes of one mail each:\n%s", drop, cmd, firstDiff(want.String(), got))
			}
		}
		before := heads.Load()
		s.do("UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)")
		s.do("UID SEARCH TEXT body")
		if heads.Load() != before {
			t.Fatalf("BODYSTRUCTURE or SEARCH TEXT read heads only")
		}
		s.do("UID SEARCH FROM bob")
		if heads.Load() == before {
			t.Fatalf("SEARCH FROM did not read heads")
		}
	}
}

// headsMails are mails whose heads are easy to get wrong: a Received
// field without line end at the end of a mail without body, a folded
// Subject, an empty body after the blank line, a body that starts with
// a blank line.
var headsMails = []string{
	"From: a@y.example\r\nSubject: open trace\r\nReceived: from z by x; Sat, 28 Nov 2026 10:00:00 +0000",
	"Received: from a by x; Sat, 28 Nov 2026 10:00:00 +0000\r\nSubject: folded\r\n  subject\r\nFrom: b@y.example\r\n\r\n",
	"Subject: blank first\r\nReceived: from b by x\r\n\r\n\r\nbody after a blank line\r\n",
}
