package daemon

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestClockSkewBetweenServers (TEST-CATALOG 86, clock skew): two more
// imapd servers over the same dbd, one with its clock 10 minutes ahead,
// one 10 minutes behind, as two sites with skewed clocks would be. Each
// change made at the slow server after one made at the fast server (and
// seen there) wins, because stamps never go below what they replace:
// a flag set ahead and cleared behind stays cleared, a folder created
// ahead and deleted behind stays deleted (and can be created again), a
// rename behind of a folder made ahead takes, and a mail moved ahead and
// moved back behind ends in INBOX. Stamping with the clock alone would
// let the fast server win all of these for 20 minutes.
func TestClockSkewBetweenServers(t *testing.T) {
	k := start(t)
	k.deliver(mail(1))
	skewed := func(d time.Duration) string {
		addr, _, _ := k.runIMAPD(func(c *Config) { c.Now = func() time.Time { return time.Now().Add(d) } })
		return addr
	}
	fast, slow := skewed(10*time.Minute), skewed(-10*time.Minute)
	// at opens a fresh session at addr (so it starts from what dbd holds
	// now, as a client that has seen the last change does).
	at := func(addr string) *imapclient.Client {
		t.Helper()
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Login(login, password).Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	flagsAt := func(addr, box string) []imap.Flag {
		t.Helper()
		c := at(addr)
		if _, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatalf("select %s: %v", box, err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("fetch flags in %s: %v, %d messages", box, err, len(msgs))
		}
		return msgs[0].Flags
	}
	store := func(addr string, op imap.StoreFlagsOp, f imap.Flag) {
		t.Helper()
		c := at(addr)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{f}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	folders := func(addr string) []string {
		t.Helper()
		list, err := at(addr).List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range list {
			names = append(names, l.Mailbox)
		}
		return names
	}
	run := func(addr, what string, cmd func(c *imapclient.Client) error) {
		t.Helper()
		if err := cmd(at(addr)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	for _, f := range []imap.Flag{imap.FlagFlagged, "$Label1"} {
		store(fast, imap.StoreFlagsAdd, f)
		store(slow, imap.StoreFlagsDel, f)
		// Keywords are case-insensitive (imapd lists them in lower case).
		has := func(fs []imap.Flag) bool {
			return slices.ContainsFunc(fs, func(g imap.Flag) bool { return strings.EqualFold(string(g), string(f)) })
		}
		if got := flagsAt(k.addr, "INBOX"); has(got) {
			t.Errorf("%s set 10 min ahead and cleared 10 min behind: still set (%v)", f, got)
		}
		store(fast, imap.StoreFlagsAdd, f)
		if got := flagsAt(slow, "INBOX"); !has(got) {
			t.Errorf("%s set again ahead: not set (%v)", f, got)
		}
	}

	run(fast, "create ahead", func(c *imapclient.Client) error { return c.Create("Projects", nil).Wait() })
	run(slow, "delete behind", func(c *imapclient.Client) error { return c.Delete("Projects").Wait() })
	if got := folders(k.addr); slices.Contains(got, "Projects") {
		t.Errorf("a folder created ahead and deleted behind is still listed: %v", got)
	}
	run(slow, "create again behind", func(c *imapclient.Client) error { return c.Create("Projects", nil).Wait() })
	if got := folders(fast); !slices.Contains(got, "Projects") {
		t.Errorf("a folder created again behind is not listed ahead: %v", got)
	}
	run(fast, "delete ahead", func(c *imapclient.Client) error { return c.Delete("Projects").Wait() })
	run(fast, "create ahead", func(c *imapclient.Client) error { return c.Create("Work", nil).Wait() })
	run(slow, "rename behind", func(c *imapclient.Client) error { return c.Rename("Work", "Archive", nil).Wait() })
	if got := folders(k.addr); slices.Contains(got, "Work") || !slices.Contains(got, "Archive") {
		t.Errorf("a folder made ahead and renamed behind: %v, want Archive and no Work", got)
	}

	run(fast, "move ahead", func(c *imapclient.Client) error {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			return err
		}
		_, err := c.Move(imap.SeqSetNum(1), "Archive").Wait()
		return err
	})
	run(slow, "move back behind", func(c *imapclient.Client) error {
		if _, err := c.Select("Archive", nil).Wait(); err != nil {
			return err
		}
		_, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait()
		return err
	})
	for _, box := range []string{"INBOX", "Archive"} {
		c := at(k.addr)
		sd, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint32{"INBOX": 1, "Archive": 0}[box]
		if sd.NumMessages != want {
			t.Errorf("after a move ahead and a move back behind, %s holds %d mails, want %d", box, sd.NumMessages, want)
		}
	}
}
