package test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// zone is a loopback DNS server's TXT records (lower-case FQDN).
type zone struct {
	mu  sync.Mutex
	txt map[string]string
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z.mu.Lock()
	v, ok := "", false
	if len(req.Question) == 1 {
		v, ok = z.txt[strings.ToLower(req.Question[0].Name)]
	}
	z.mu.Unlock()
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case req.Question[0].Qtype == dns.TypeTXT:
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
	}
	_ = w.WriteMsg(m)
}

// startDNS serves z on a loopback UDP port until the test ends.
func startDNS(t *testing.T, z *zone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// dkimKey makes an ed25519 key for domain and publishes it as selector
// "sel".
func dkimKey(t *testing.T, z *zone, domain string) crypto.Signer {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	z.txt["sel._domainkey."+domain+"."] = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	z.mu.Unlock()
	return key
}

// configMail is a mail from from to config@x.test carrying body; signed
// with key for domain d unless key is nil.
func configMail(t *testing.T, from, id, body string, d string, key crypto.Signer) []byte {
	t.Helper()
	raw := []byte(strings.ReplaceAll("From: "+from+"\nTo: config@x.test\nSubject: config\nMessage-ID: <"+id+"@x.test>\nDate: Wed, 04 Mar 2026 10:00:00 +0000\n\n"+body, "\n", "\r\n"))
	if key == nil {
		return raw
	}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{Domain: d, Selector: "sel", Signer: key}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestConfigByMail: an admin's DKIM-signed config mail changes the block
// list and is confirmed by mail; forged From, a broken signature, a wrong
// secret and a sender who is not an admin get 550 and change nothing; a
// replay changes nothing (also to a second config address); a mail with a
// bad line changes nothing and its confirmation names the line; dbctl
// config show, history and apply see the same configuration.
func TestConfigByMail(t *testing.T) {
	dir := t.TempDir()
	z := &zone{txt: map[string]string{}}
	xKey, evilKey := dkimKey(t, z, "x.test"), dkimKey(t, z, "evil.test")
	dnsAddr := startDNS(t, z)

	d := startDB(t, dir, true)
	key, dbAddr := d.Key, d.Addr
	db := []string{"--db", dbAddr, "--db-pub", key("dbd.pub"), "--key", key("admin")}
	dbctl := func(args ...string) string {
		t.Helper()
		return run(t, "dbctl", append(append([]string{}, db...), args...)...)
	}
	dbctl("mailbox", "add", "u@x.test")
	dbctl("mailbox", "add", "boss@x.test")
	dbctl("mailbox", "add", "intruder@x.test")
	dbctl("mailbox", "add", "v@y.test")
	hash, err := passwd.Hash("correct horse battery", passwd.Params{Time: 1, MemoryKiB: 1024, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(dir, "boot.conf")
	os.WriteFile(boot, []byte("# the first admin\nadmin add boss@x.test\nadmin secret boss@x.test "+hash+"\n"), 0o600)
	if out := dbctl("config", "apply", boot); !strings.Contains(out, "2 changes applied") {
		t.Fatalf("config apply: %s", out)
	}

	smtpAddr := proctest.FreePort(t)
	proctest.StartProc(t, binDir, "smtpd", smtpAddr, "--db", dbAddr, "--db-pub", key("dbd.pub"), "--key", key("smtpd"), "--listen", smtpAddr,
		"--hostname", "mx.x.test", "--min-copies", "1", "--decision-window", "10s", "--greet-pause", "0s")
	spamd := proctest.StartProc(t, binDir, "spamd", "", "--db", dbAddr, "--db-pub", key("dbd.pub"), "--key", key("spamd"), "--config-key", key("spamd-config"),
		"--dns", dnsAddr, "--grey-delay", "0", "--digest-every", "0", "--digest-smtp", smtpAddr)
	// spamd creates config@ of every local domain.
	for _, box := range []string{"config@x.test", "config@y.test"} {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			cmd := exec.Command(filepath.Join(binDir, "dbctl"), append(append([]string{}, db...), "find", "mailbox", box)...)
			if cmd.Run() == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("spamd did not create %s:\n%s", box, spamd.Log.String())
			}
		}
	}
	store := mailbox.New(adminClient(t, dbAddr, key("admin"), key("dbd.pub")))
	spamN := 0
	spam := func() int {
		spamN++
		return send(t, smtpAddr, "bot@spam.example", "u@x.test",
			[]byte("From: bot@spam.example\nTo: u@x.test\nSubject: offer "+strings.Repeat("!", spamN)+"\nMessage-ID: <s"+strings.Repeat("x", spamN)+"@spam.example>\n\nBuy.\n"))
	}
	if code := spam(); code != 250 {
		t.Fatalf("mail from spam.example before any config: %d, want 250", code)
	}

	// An admin's signed mail blocks spam.example and filters a header.
	good := configMail(t, "Boss <boss@x.test>", "c1", "block u@x.test @spam.example   # enough\nfilter add u@x.test X-Spam-Report\n", "x.test", xKey)
	if code := send(t, smtpAddr, "boss@x.test", "config@x.test", good); code != 250 {
		t.Fatalf("signed config mail from the admin: %d, want 250\n%s", code, spamd.Log.String())
	}
	if code := spam(); code != 550 {
		t.Fatalf("mail from spam.example after the config mail blocked it: %d, want 550", code)
	}
	conf := waitConfirmation(t, store, "boss@x.test", "twinmx config: applied", "block u@x.test @spam.example")
	for _, want := range []string{"line 1: ok (was: none): block u@x.test @spam.example", "line 2: ok (was: none): filter add u@x.test X-Spam-Report", "2 changes applied"} {
		if !strings.Contains(conf, want) {
			t.Errorf("confirmation lacks %q:\n%s", want, conf)
		}
	}
	shown := dbctl("config", "show")
	for _, want := range []string{"block u@x.test @spam.example\n", "filter add u@x.test x-spam-report\n", "admin add boss@x.test\n"} {
		if !strings.Contains(shown, want) {
			t.Fatalf("config show lacks %q:\n%s", want, shown)
		}
	}
	if h := dbctl("config", "history"); !strings.Contains(h, `who=boss@x.test via="mail `) || !strings.Contains(h, `line="block u@x.test @spam.example   # enough"`) {
		t.Errorf("config history:\n%s", h)
	}

	// Refused, and nothing changes: each would unblock spam.example.
	unblock := "unlist u@x.test @spam.example\n"
	broken := configMail(t, "boss@x.test", "c3", unblock, "x.test", xKey)
	broken = bytes.Replace(broken, []byte("unlist"), []byte("unList"), 1)
	for _, tc := range []struct {
		name, from string
		raw        []byte
	}{
		{"forged From (signed by another domain)", "boss@x.test", configMail(t, "boss@x.test", "c2", unblock, "evil.test", evilKey)},
		{"broken signature", "boss@x.test", broken},
		{"wrong secret", "boss@x.test", configMail(t, "boss@x.test", "c4", "secret: not the secret\n"+unblock, "", nil)},
		{"no signature, no secret", "boss@x.test", configMail(t, "boss@x.test", "c5", unblock, "", nil)},
		{"not an admin", "intruder@x.test", configMail(t, "intruder@x.test", "c6", unblock, "x.test", xKey)},
	} {
		if code := send(t, smtpAddr, tc.from, "config@x.test", tc.raw); code != 550 {
			t.Errorf("%s: %d, want 550", tc.name, code)
		}
	}
	if got := dbctl("config", "show"); got != shown {
		t.Errorf("refused config mails changed the configuration:\n%s\nwant\n%s", got, shown)
	}
	if code := spam(); code != 550 {
		t.Errorf("spam.example after refused config mails: %d, want 550", code)
	}
	out := dbctl("mails", "--last", "20")
	for _, want := range []string{"is not a configuration admin", "no DKIM signature aligned with x.test and no valid secret"} {
		if !strings.Contains(out, want) {
			t.Errorf("dbctl mails lacks reason %q:\n%s", want, out)
		}
	}

	// The secret authenticates an unsigned mail; it unblocks.
	if code := send(t, smtpAddr, "boss@x.test", "config@x.test", configMail(t, "boss@x.test", "c7", "secret: correct horse battery\n"+unblock, "", nil)); code != 250 {
		t.Fatalf("config mail with the right secret: %d, want 250", code)
	}
	if code := spam(); code != 250 {
		t.Fatalf("spam.example after unlist: %d, want 250", code)
	}
	waitConfirmation(t, store, "boss@x.test", "twinmx config: applied", "unlist u@x.test @spam.example")
	shown = dbctl("config", "show")

	// Replays of the first mail change nothing: to the same address (the
	// receive row has its verdict) and to another config address (the
	// mail's record).
	for _, rcpt := range []string{"config@x.test", "config@y.test"} {
		if code := send(t, smtpAddr, "boss@x.test", rcpt, good); code != 250 {
			t.Errorf("replay to %s: %d, want 250", rcpt, code)
		}
	}
	if code := spam(); code != 250 {
		t.Errorf("spam.example after replays of the blocking mail: %d, want 250 (the replay re-applied it)", code)
	}
	if got := dbctl("config", "show"); got != shown {
		t.Errorf("a replay changed the configuration:\n%s\nwant\n%s", got, shown)
	}
	if out := dbctl("mails", "--last", "20"); !strings.Contains(out, "already applied (replay)") {
		t.Errorf("the replay to config@y.test is not recorded as a replay:\n%s", out)
	}

	// One bad line: nothing applied, the confirmation names the line.
	bad := configMail(t, "boss@x.test", "c8", "allow u@x.test friend@y.example\nfrobnicate everything\nblock u@x.test @spam.example\n", "x.test", xKey)
	if code := send(t, smtpAddr, "boss@x.test", "config@x.test", bad); code != 250 {
		t.Fatalf("config mail with a bad line: %d, want 250", code)
	}
	conf = waitConfirmation(t, store, "boss@x.test", "twinmx config: NOT applied", "frobnicate")
	for _, want := range []string{"line 2: error: config: syntax: unknown command \"frobnicate\"", "line 1: ok", "1 of 3 lines failed: nothing applied"} {
		if !strings.Contains(conf, want) {
			t.Errorf("confirmation of the bad mail lacks %q:\n%s", want, conf)
		}
	}
	if got := dbctl("config", "show"); got != shown {
		t.Errorf("a mail with a bad line changed the configuration:\n%s\nwant\n%s", got, shown)
	}

	// show | apply: applies cleanly and changes no setting.
	showFile := filepath.Join(dir, "show.conf")
	os.WriteFile(showFile, []byte(shown), 0o600)
	if out := dbctl("config", "apply", showFile); !strings.Contains(out, "changes applied") {
		t.Errorf("apply of show: %s", out)
	}
	if got := dbctl("config", "show"); got != shown {
		t.Errorf("apply of show changed the configuration:\n%s\nwant\n%s", got, shown)
	}
}

// waitConfirmation waits (bounded) for a confirmation in box whose Subject
// starts with subject and whose text contains what; it returns the text.
func waitConfirmation(t *testing.T, store *mailbox.Store, box, subject, what string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msgs, err := store.Messages(ctx, model.KeyOf(model.Mailbox, []byte(box)), 0)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		for _, m := range msgs {
			raw, err := store.Fetch(ctx, m, nil)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil || !strings.HasPrefix(msg.Header.Get("Subject"), subject) {
				continue
			}
			body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
			if err == nil && strings.Contains(string(body), what) {
				cancel()
				return string(body)
			}
		}
		cancel()
	}
	t.Fatalf("no confirmation %q mentioning %q in %s within 30s", subject, what, box)
	return ""
}
