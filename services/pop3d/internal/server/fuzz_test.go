package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"
)

// FuzzSession sends arbitrary bytes as commands over TCP into a POP3
// Server and dbd in this process: the command parser and every command
// behind it meet what a hostile client sends. The input's first byte
// picks the state they arrive in: even, right after the greeting; odd,
// logged in. Whatever the answers, the server must not panic — a panic
// it recovers from is logged, and counts as a failure here — and must go
// on serving: the next input's login needs it. pop3.FuzzParse covers the
// parser alone.
//
//	go test -run XXX -fuzz FuzzSession ./services/pop3d/internal/server/
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"STAT\r\nLIST\r\nUIDL\r\n",
		"RETR 1\r\nTOP 2 0\r\nTOP 1 4294967295\r\n",
		"DELE 1\r\nRSET\r\nDELE 2\r\nLIST 2\r\nRETR 2\r\n",
		"LIST 0\r\nRETR -1\r\nDELE 99999999999999999999\r\nTOP 1\r\n",
		"UIDL 3\r\nNOOP\r\nCAPA\r\n",
		"USER x\r\nPASS y\r\nAUTH PLAIN\r\n*\r\n",
		"STLS\r\n",
		"\x00\xff\r\n\n\r\r\n",
		"QUIT\r\n",
	} {
		f.Add(append([]byte{1}, seed...))
	}
	for _, seed := range []string{
		"CAPA\r\nUSER fuzz\r\nPASS wrong\r\nUSER fuzz\r\nPASS correct horse\r\nSTAT\r\n",
		"AUTH PLAIN\r\nAGZ1enoAY29ycmVjdCBob3JzZQ==\r\nLIST\r\n",
		"AUTH PLAIN =\r\nAUTH LOGIN\r\nAPOP fuzz 0123456789abcdef\r\n",
		"STLS\r\nUSER fuzz\r\n",
		"RETR 1\r\nPASS x\r\n",
	} {
		f.Add(append([]byte{0}, seed...))
	}
	logs := &proctest.PanicLog{}
	e := startEnv(f, Config{Logger: slog.New(logs), MaxAuthFailures: -1})
	e.user("fuzz", "correct horse", "fuzz@x.example")
	for i := range 3 {
		e.deliver("fuzz@x.example", fmt.Sprintf("From: a@b.example\r\nSubject: mail %d\r\n\r\nbody %d\r\n", i, i))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 64<<10 {
			return
		}
		loggedIn := in[0]%2 == 1
		var msg bytes.Buffer
		if loggedIn {
			msg.WriteString("USER fuzz\r\nPASS correct horse\r\n")
		}
		msg.Write(in[1:])
		// RSET first: a QUIT must not make the input's DELEs stick, or
		// later inputs would find an empty maildrop.
		msg.WriteString("\r\nRSET\r\nQUIT\r\n")
		got := proctest.Converse(t, e.addr, msg.Bytes(), 3*time.Second)
		lines := bytes.SplitN(got, []byte("\r\n"), 4)
		if !bytes.HasPrefix(got, []byte("+OK")) || loggedIn && (len(lines) < 4 ||
			!bytes.HasPrefix(lines[1], []byte("+OK")) || !bytes.HasPrefix(lines[2], []byte("+OK"))) {
			t.Fatalf("no greeting, or USER and PASS not answered +OK before the input: %q", got)
		}
		if p := logs.Take(); p != "" {
			t.Fatalf("pop3d panicked on %q: %s", in, p)
		}
	})
}

// FuzzDecodePlain: the SASL PLAIN parser (RFC 4616) takes a client's
// base64 response; whatever it accepts has a non-empty login and password
// without NULs, an authorization identity that is empty or the login, and
// encodes back to a response that decodes the same.
func FuzzDecodePlain(f *testing.F) {
	for _, s := range []string{
		"\x00frank\x00correct horse", "frank\x00frank\x00pw", "admin\x00frank\x00pw", "Frank\x00frank\x00pw",
		"\x00\x00pw", "\x00frank\x00", "frank\x00pw", "\x00a\x00b\x00c", "",
	} {
		f.Add(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	for _, s := range []string{"=", "*", "AGZyYW5rAHB3", "AGZyYW5rAHB3=", "!!!!", "AA==AA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, resp string) {
		user, password, err := decodePlain(resp)
		if err != nil {
			if user != "" || password != "" {
				t.Fatalf("decodePlain(%q) = %q, %q with error %v", resp, user, password, err)
			}
			return
		}
		if user == "" || password == "" || strings.ContainsRune(user, 0) || strings.ContainsRune(password, 0) {
			t.Fatalf("decodePlain(%q) = %q, %q", resp, user, password)
		}
		raw, _ := base64.StdEncoding.DecodeString(resp)
		if authzid, _, _ := strings.Cut(string(raw), "\x00"); authzid != "" && !strings.EqualFold(authzid, user) {
			t.Fatalf("decodePlain(%q) let authorization identity %q log in as %q", resp, authzid, user)
		}
		again := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
		if u, p, err := decodePlain(again); err != nil || u != user || p != password {
			t.Fatalf("decodePlain(%q) = %q, %q, %v; want %q, %q", again, u, p, err, user, password)
		}
	})
}
