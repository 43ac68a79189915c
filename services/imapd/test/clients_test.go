package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// pyDeflated is Python defining imaplib.IMAP4 with COMPRESS=DEFLATE (RFC
// 4978), which imaplib lacks: start_compress() sends COMPRESS DEFLATE and
// from its OK on reads and writes through zlib (raw deflate, sync flushes);
// wire counts the bytes read from the socket after it.
const pyDeflated = `
import imaplib, zlib
imaplib.Commands["COMPRESS"] = ("AUTH", "SELECTED")

class Deflated(imaplib.IMAP4):
    on = False
    def start_compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        assert typ == "OK", data
        # A bytearray: CPython drops bytes from its front without copying.
        self.on, self.wire, self.buf = True, 0, bytearray()
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise self.abort("socket closed")
        self.wire += len(data)
        self.buf += self.inflate.decompress(data)
    def read(self, size):
        if not self.on:
            return super().read(size)
        while len(self.buf) < size:
            self.fill()
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out
    def readline(self):
        if not self.on:
            return super().readline()
        while b"\n" not in self.buf:
            self.fill()
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out
    def send(self, data):
        if not self.on:
            return super().send(data)
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

`

// imaplibScript fetches every mail of INBOX with UID FETCH BODY.PEEK[] and
// writes each to OUT/<n> (n = position in UID order), byte for byte. With
// a sixth argument "compress" it first turns on COMPRESS=DEFLATE (RFC
// 4978) with Python's zlib, the library most clients deflate with
// (imaplib has no COMPRESS of its own: pyDeflated adds it), and
// prints the bytes that came over the socket after the switch.
const imaplibScript = pyDeflated + `
import sys, os
host, port, user, pw, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
compress = len(sys.argv) > 6 and sys.argv[6] == "compress"
m = Deflated(host, port)
m.login(user, pw)
if compress:
    assert b"COMPRESS=DEFLATE" in m.capability()[1][0], m.capability()
    m.start_compress()
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK", data
typ, data = m.uid("SEARCH", None, "ALL")
uids = [int(u) for u in data[0].split()]
uids.sort()
for i in range(0, len(uids), 200):
    chunk = uids[i:i+200]
    typ, data = m.uid("FETCH", "%d:%d" % (chunk[0], chunk[-1]), "(UID BODY.PEEK[])")
    assert typ == "OK", data
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta, body = item
        uid = int(meta.split(b"UID ")[1].split()[0].rstrip(b")"))
        with open(os.path.join(out, "%010d" % uid), "wb") as f:
            f.write(body)
if compress:
    print("wire", m.wire)
m.logout()
print(len(uids))
`

// TestImaplibCorpusByteExact: Python's imaplib reads back the whole shared
// corpus byte for byte via BODY[], plain and with COMPRESS=DEFLATE (zlib
// on the client's side).
func TestImaplibCorpusByteExact(t *testing.T) {
	py := need(t, "python3", "python3")
	corpus := loadCorpus(t)
	s := newSiteWith(t, siteOptions{flags: []string{"--compress-sessions", "4"}})
	s.deliver(corpus)
	host, port, _ := strings.Cut(s.imapAddr, ":")
	total := 0
	for _, m := range corpus {
		total += len(m)
	}
	for _, mode := range []string{"plain", "compress"} {
		out := t.TempDir()
		ctx := proctest.Ctx(t, 5*time.Minute)
		res, err := exec.CommandContext(ctx, py, "-c", imaplibScript, host, port, login, password, out, mode).CombinedOutput()
		if err != nil {
			t.Fatalf("imaplib (%s): %v\n%s", mode, err, res)
		}
		got := readDir(t, out)
		if len(got) != len(corpus) {
			t.Fatalf("imaplib (%s) fetched %d mails, want %d", mode, len(got), len(corpus))
		}
		bad := 0
		for i := range corpus {
			if !bytes.Equal(got[i], corpus[i]) {
				bad++
				if bad <= 3 {
					t.Errorf("%s: mail %d differs: got %d bytes, want %d", mode, i, len(got[i]), len(corpus[i]))
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d of %d mails differ", mode, bad, len(corpus))
		}
		if mode == "compress" {
			var wire int
			if _, err := fmt.Sscanf(string(res), "wire %d", &wire); err != nil || wire <= 0 {
				t.Fatalf("imaplib (compress) printed %q, want the bytes on the wire", res)
			}
			// The answers carry the mails plus some 60 bytes of FETCH
			// syntax each; a deflater that sent them as they are (stored
			// blocks) would need more than the mails' bytes.
			t.Logf("COMPRESS=DEFLATE: %d mails, %d bytes, %d bytes on the wire (%.1f %%)", len(corpus), total, wire, 100*float64(wire)/float64(total))
			if wire*10 > total*6 {
				t.Errorf("COMPRESS=DEFLATE sent %d bytes for %d bytes of mail; want under 60 %%", wire, total)
			}
		}
	}
	fetchStructures(t, s.imapAddr, len(corpus))
}

// fetchStructures fetches ENVELOPE and BODYSTRUCTURE (extended) of every
// mail in INBOX with go-imap's client, which parses them strictly
// (TEST-CATALOG 52): two corpus mails have a multipart with no parts,
// which go-imap's own writer panicked on in the middle of the answer.
func fetchStructures(t *testing.T, addr string, want int) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(login, password).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	cmd := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	})
	type result struct {
		msgs []*imapclient.FetchMessageBuffer
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := cmd.Collect()
		done <- result{msgs, err}
	}()
	var msgs []*imapclient.FetchMessageBuffer
	select {
	case r := <-done:
		msgs, err = r.msgs, r.err
	case <-time.After(2 * time.Minute):
		// go-imap's client waits for ever when the connection fails
		// under a FETCH.
		t.Fatal("UID FETCH 1:* (ENVELOPE BODYSTRUCTURE): no complete answer within 2 minutes (hang guard)")
	}
	if err != nil {
		t.Fatalf("UID FETCH 1:* (ENVELOPE BODYSTRUCTURE): %v", err)
	}
	if len(msgs) != want {
		t.Fatalf("UID FETCH 1:* (ENVELOPE BODYSTRUCTURE) answered %d mails, want %d", len(msgs), want)
	}
	for _, m := range msgs {
		if m.Envelope == nil || m.BodyStructure == nil {
			t.Errorf("UID %d: no ENVELOPE or BODYSTRUCTURE", m.UID)
		}
	}
}

// readDir returns the files of dir in name order.
func readDir(t testing.TB, dir string) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func testMails(n int) [][]byte {
	var out [][]byte
	for i := 1; i <= n; i++ {
		out = append(out, []byte(fmt.Sprintf("Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\nFrom: Bob <bob@y.example>\r\nTo: alice@x.example\r\nSubject: test %d\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <t%d@y.example>\r\n\r\nhello %d\r\n", i, i, i)))
	}
	return out
}

var tuid = regexp.MustCompile(`(?m)^X-TUID: [^\n]*\n`)

// TestMbsync: isync's mbsync pulls INBOX into a Maildir; every mail
// arrives (mbsync stores LF line ends), and a second run fetches nothing
// new.
func TestMbsync(t *testing.T) {
	mbsync := need(t, "mbsync", "isync")
	s := newSite(t)
	mails := testMails(20)
	s.deliver(mails)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := writeMbsyncrc(t, dir, s.imapAddr, "Create Near\nSync Pull")
	sync := func() {
		t.Helper()
		ctx := proctest.Ctx(t, 2*time.Minute)
		out, err := exec.CommandContext(ctx, mbsync, "-c", cfg, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	sync()
	want := map[string]bool{}
	for _, m := range mails {
		want[string(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")))] = true
	}
	check := func(n int) {
		t.Helper()
		var files []string
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, "mail", "INBOX", sub))
			for _, e := range ents {
				files = append(files, filepath.Join(dir, "mail", "INBOX", sub, e.Name()))
			}
		}
		if len(files) != n {
			t.Fatalf("Maildir holds %d mails, want %d", len(files), n)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// isync keeps the server's line ends or stores LF, and adds
			// its own X-TUID field (to find mails again): take both out.
			b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
			b = tuid.ReplaceAll(b, nil)
			if !want[string(b)] {
				t.Errorf("Maildir file %s is not one of the delivered mails:\n%s", f, b)
			}
		}
	}
	check(len(mails))
	more := testMails(25)[20:]
	s.deliver(more)
	for _, m := range more {
		want[string(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")))] = true
	}
	sync()
	check(25)
}

// imaplibExtScript asks NAMESPACE and an ESEARCH-style UID SEARCH RETURN
// with Python's imaplib and prints the two untagged answers.
const imaplibExtScript = `
import imaplib, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = imaplib.IMAP4(host, port)
m.login(user, pw)
typ, data = m.capability()  # imaplib keeps the pre-login list otherwise
caps = data[0].decode().split()
assert "NAMESPACE" in caps and "ESEARCH" in caps and "SORT" in caps, caps
typ, data = m.namespace()
assert typ == "OK", data
print(data[0].decode())
m.select("INBOX", readonly=True)
typ, data = m.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
assert typ == "OK", data
print(m.untagged_responses.get("ESEARCH", [b"none"])[0].decode())
typ, data = m.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")
assert typ == "OK", data
print(data[0].decode())
m.logout()
`

// TestImaplibNamespaceESearch: Python's imaplib sees NAMESPACE, ESEARCH
// and SORT advertised and gets well-formed answers.
func TestImaplibNamespaceESearch(t *testing.T) {
	py := need(t, "python3", "python3")
	s := newSite(t)
	s.deliver(testMails(3))
	host, port, _ := strings.Cut(s.imapAddr, ":")
	ctx := proctest.Ctx(t, time.Minute)
	res, err := exec.CommandContext(ctx, py, "-c", imaplibExtScript, host, port, login, password).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, res)
	}
	lines := strings.Split(strings.TrimSpace(string(res)), "\n")
	if len(lines) != 3 || lines[0] != `(("" "/")) NIL NIL` {
		t.Fatalf("NAMESPACE answer: got %q, want %q", res, `(("" "/")) NIL NIL`)
	}
	// UIDs are per site; only their count and order are known here.
	var tag string
	var min, max, count int
	if _, err := fmt.Sscanf(lines[1], "(TAG %s UID MIN %d MAX %d COUNT %d", &tag, &min, &max, &count); err != nil || count != 3 || min >= max {
		t.Fatalf("ESEARCH answer %q (%v): want UID MIN < MAX and COUNT 3", lines[1], err)
	}
	if lines[2] != "3 2 1" {
		t.Errorf("SORT (REVERSE SUBJECT) of test 1, 2, 3: %q, want \"3 2 1\"", lines[2])
	}
}

// TestMutt: mutt, driven by keys pushed in a pseudo-terminal (script(1)),
// logs in over IMAP, copies every mail of INBOX to an mbox file and
// quits. Every mail arrives whole (mutt writes LF line ends and adds its
// own Status and Content-Length fields, which are left out here).
func TestMutt(t *testing.T) {
	mutt := need(t, "mutt", "mutt")
	scriptCmd := need(t, "script", "bsdutils")
	s := newSite(t)
	mails := testMails(5)
	s.deliver(mails)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.mbox")
	rc := fmt.Sprintf(`set imap_user = "%s"
set imap_pass = "%s"
set folder = "%s"
set ssl_starttls = no
set ssl_force_tls = no
set imap_authenticators = "login"
set header_cache = ""
set message_cachedir = ""
set mbox_type = mbox
set confirmappend = no
set confirmcreate = no
set quit = yes
set move = no
set mark_old = no
set wait_key = no
set sort = date-sent
folder-hook . 'push "<tag-pattern>~A<enter><tag-prefix><copy-message>%s<enter><quit>"'
`, login, password, dir, out)
	cfg := filepath.Join(dir, "muttrc")
	if err := os.WriteFile(cfg, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(s.imapAddr, ":")
	// The keys are pushed when the folder is open (folder-hook), not at
	// startup, where mutt has no mailbox yet.
	cmdline := fmt.Sprintf("%s -n -F %s -f imap://%s:%s/INBOX", mutt, cfg, host, port)
	ctx := proctest.Ctx(t, 20*time.Second)
	cmd := exec.CommandContext(ctx, scriptCmd, "-qec", cmdline, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=vt100", "COLUMNS=120", "LINES=40", "HOME="+dir)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mutt: %v\nscreen:\n%q", err, res)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("mutt wrote no mbox: %v\n%s", err, res)
	}
	if n := bytes.Count(got, []byte("\nFrom ")) + boolInt(bytes.HasPrefix(got, []byte("From "))); n != len(mails) {
		t.Fatalf("mbox holds %d mails, want %d:\n%s\nscreen:\n%q", n, len(mails), got, res)
	}
	for _, m := range mails {
		lf := bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))
		head, body, _ := bytes.Cut(lf, []byte("\n\n"))
		for _, line := range bytes.Split(head, []byte("\n")) {
			if !bytes.Contains(got, append(append([]byte("\n"), line...), '\n')) {
				t.Errorf("header line %q missing from the mbox", line)
			}
		}
		if !bytes.Contains(got, append([]byte("\n\n"), body...)) {
			t.Errorf("body %q missing from the mbox", body)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
