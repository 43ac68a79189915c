package test

import (
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// link is the backupd process between two sites: stopping it cuts the
// sites off from each other (backupd is their only link), starting it
// again heals the partition.
type link struct {
	t       *testing.T
	args    []string
	metrics string
	cmd     *exec.Cmd
	log     *proctest.SyncBuffer
}

// twoSites starts sites A and B (the account at A) with backupd between
// them and waits until B has the account.
func twoSites(t *testing.T) (a, b *site, l *link) {
	t.Helper()
	dir := t.TempDir()
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bkey := filepath.Join(dir, "backupd")
	if err := wire.WriteKeyFiles(bkey, kp); err != nil {
		t.Fatal(err)
	}
	a = newSiteWith(t, siteOptions{backupdPub: bkey + ".pub"})
	b = newSiteWith(t, siteOptions{backupdPub: bkey + ".pub", noUser: true})
	l = &link{t: t, metrics: proctest.FreePort(t), args: []string{"--key", bkey,
		"--site", fmt.Sprintf("A=%s,%s", a.Addr, a.Key("dbd.pub")), "--site", fmt.Sprintf("B=%s,%s", b.Addr, b.Key("dbd.pub"))}}
	l.start()
	t.Cleanup(func() {
		if t.Failed() && l.log != nil {
			t.Logf("backupd log (tail):\n%s", proctest.Tail(l.log.String(), 30))
		}
		l.stop()
	})
	eventually(t, "the account at B", func() (bool, error) {
		_, err := look(t, b.imapAddr, "INBOX")
		return err == nil, err
	})
	return a, b, l
}

func (l *link) start() {
	l.t.Helper()
	l.log = &proctest.SyncBuffer{}
	l.cmd = exec.Command(filepath.Join(binDir, "backupd"), append(slices.Clone(l.args), "--metrics", l.metrics)...)
	l.cmd.Stderr = l.log
	proctest.DieWithTest(l.cmd)
	if err := l.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	proctest.WaitListening(l.t, l.metrics, 20*time.Second, l.log)
}

// stop kills backupd (the partition); harmless when stopped.
func (l *link) stop() {
	if l.cmd == nil {
		return
	}
	l.cmd.Process.Kill()
	l.cmd.Wait()
	l.cmd = nil
}

// state is what a client sees of the whole account at one site: every
// folder's view.
type state map[string]*view

func lookAll(t *testing.T, addr string) (state, error) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(login, password).Wait(); err != nil {
		return nil, err
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, err
	}
	st := state{}
	for _, b := range boxes {
		if slices.Contains(b.Attrs, imap.MailboxAttrNoSelect) {
			continue // a level above a folder, no folder itself (LIST shows it)
		}
		v, err := look(t, addr, b.Mailbox)
		if err != nil {
			return nil, err
		}
		st[b.Mailbox] = v
	}
	return st, nil
}

// summary is the state without UIDs: folder -> sorted mail subjects and
// flags, comparable across sites.
func (st state) summary() string {
	var lines []string
	for name, v := range st {
		var ms []string
		for _, body := range v.byUID {
			fl := slices.Clone(v.flags[body])
			fl = slices.DeleteFunc(fl, func(f imap.Flag) bool { return f == "\\Recent" })
			slices.Sort(fl)
			ms = append(ms, fmt.Sprintf("%s%v", subject(body), fl))
		}
		sort.Strings(ms)
		lines = append(lines, name+": "+strings.Join(ms, " "))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func subject(body string) string {
	i := strings.Index(body, "Subject: ")
	if i < 0 {
		return "?"
	}
	s := body[i+len("Subject: "):]
	return s[:strings.Index(s, "\r")]
}

// count returns how many times the mail with subject subj is listed in
// the account, and where.
func (st state) count(subj string) (n int, in []string) {
	for name, v := range st {
		for _, body := range v.byUID {
			if subject(body) == subj {
				n++
				in = append(in, name)
			}
		}
	}
	sort.Strings(in)
	return n, in
}

func partMail(subj string) []byte {
	return []byte(fmt.Sprintf("From: s@y.example\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@y.example>\r\n\r\nbody of %s\r\n", address, subj, subj, subj))
}

func appendTo(t *testing.T, c *imapclient.Client, box string, raw []byte) {
	t.Helper()
	cmd := c.Append(box, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND to %s: %v", box, err)
	}
}

// uidBySubject finds a mail's UID in the selected folder of c.
func uidBySubject(t *testing.T, c *imapclient.Client, subj string) imap.UID {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Envelope != nil && m.Envelope.Subject == subj {
			return m.UID
		}
	}
	t.Fatalf("no mail %q", subj)
	return 0
}

func selectBox(t *testing.T, c *imapclient.Client, box string) {
	t.Helper()
	if _, err := c.Select(box, nil).Wait(); err != nil {
		t.Fatalf("SELECT %s: %v", box, err)
	}
}

// TestPartitionConflicts: the two sites are cut off from each other
// (backupd stopped) while clients at each change the same mail and
// folders; after the link heals both sites must show the same account,
// nothing lost, duplicated or resurrected (TEST-CATALOG 84-87):
//   - 84: APPEND to INBOX at both sites: both mails at both sites, each
//     UID names one mail within a site's (folder, UIDVALIDITY);
//   - 85: \Seen at A, expunge at B of the same mail: expunged on both;
//   - 86: RENAME X→Y at A and X→Z at B: one name on both sites, its mail
//     kept; DELETE D at A and APPEND to D at B: see docs/imapd.md §4;
//   - 87: MOVE to Junk at A, \Flagged at B of the same mail: exactly one
//     copy, in Junk, flagged.
func TestPartitionConflicts(t *testing.T) {
	a, b, l := twoSites(t)
	a.deliver([][]byte{partMail("seen-vs-expunge"), partMail("move-vs-flag"), partMail("stays")})
	ca := dialLogin(t, a.imapAddr)
	for _, f := range []string{"X", "D"} {
		if err := ca.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(t, ca, "X", partMail("in-x"))
	appendTo(t, ca, "D", partMail("in-d"))
	eventually(t, "the mail and folders at B", func() (bool, error) {
		st, err := lookAll(t, b.imapAddr)
		return err == nil && st["INBOX"] != nil && len(st["INBOX"].byUID) == 3 &&
			st["X"] != nil && len(st["X"].byUID) == 1 && st["D"] != nil && len(st["D"].byUID) == 1, err
	})
	cb := dialLogin(t, b.imapAddr)

	l.stop() // partition
	// 84: APPEND to the same mailbox at both sites.
	appendTo(t, ca, "INBOX", partMail("append-a"))
	appendTo(t, cb, "INBOX", partMail("append-b"))
	// 85: \Seen at A, expunge at B.
	selectBox(t, ca, "INBOX")
	store(t, ca, uidBySubject(t, ca, "seen-vs-expunge"), imap.StoreFlagsAdd, imap.FlagSeen)
	selectBox(t, cb, "INBOX")
	u := uidBySubject(t, cb, "seen-vs-expunge")
	store(t, cb, u, imap.StoreFlagsAdd, imap.FlagDeleted)
	if err := cb.UIDExpunge(imap.UIDSetNum(u)).Close(); err != nil {
		t.Fatal(err)
	}
	// 87: MOVE at A, a flag change at B.
	if _, err := ca.Move(imap.UIDSetNum(uidBySubject(t, ca, "move-vs-flag")), "Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	store(t, cb, uidBySubject(t, cb, "move-vs-flag"), imap.StoreFlagsAdd, imap.FlagFlagged)
	// 86: RENAME X→Y at A, X→Z at B (B later); DELETE D at A, APPEND
	// to D at B (B later).
	if err := ca.Rename("X", "Y", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ca.Delete("D").Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // distinct milliseconds for "latest wins", not a timed assertion
	if err := cb.Rename("X", "Z", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendTo(t, cb, "D", partMail("append-d-b"))
	l.start() // heal

	var sa, sb state
	eventually(t, "both sites converged", func() (bool, error) {
		var err error
		if sa, err = lookAll(t, a.imapAddr); err != nil {
			return false, err
		}
		if sb, err = lookAll(t, b.imapAddr); err != nil {
			return false, err
		}
		n, _ := sa.count("append-b")
		m, _ := sb.count("append-a")
		return n == 1 && m == 1 && sa.summary() == sb.summary(), nil
	})
	t.Logf("after heal:\n%s", sa.summary())
	for _, s := range []struct {
		name string
		st   state
	}{{"A", sa}, {"B", sb}} {
		for name, v := range s.st {
			seen := map[string]bool{}
			for _, body := range v.byUID {
				if seen[body] {
					t.Errorf("site %s %s: one mail under two UIDs", s.name, name)
				}
				seen[body] = true
			}
		}
		want := map[string][]string{
			"append-a": {"INBOX"}, "append-b": {"INBOX"}, "stays": {"INBOX"},
			"seen-vs-expunge": nil, "move-vs-flag": {"Junk"}, "in-x": {"Z"},
			// D deleted at A, then APPENDed to at B: the later APPEND
			// keeps D, with only the new mail (docs/imapd.md §4).
			"in-d": nil, "append-d-b": {"D"},
		}
		for subj, where := range want {
			if _, in := s.st.count(subj); !slices.Equal(in, where) {
				t.Errorf("site %s: %q in %v, want %v", s.name, subj, in, where)
			}
		}
		if j := s.st["Junk"]; j != nil {
			for _, body := range j.byUID {
				if !slices.Contains(j.flags[body], imap.FlagFlagged) {
					t.Errorf("site %s: the moved mail lost B's \\Flagged: %v", s.name, j.flags[body])
				}
			}
		}
	}
}
