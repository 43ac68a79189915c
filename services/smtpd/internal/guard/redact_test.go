package guard

import (
	"bytes"
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

// TestRedactClient: redacting a client byte range replaces the kept bytes
// by the mark, however the stream was cut into records and whatever was
// elided, keeps every other byte, and leaves the offsets of later records
// right for a replaceClient after it.
func TestRedactClient(t *testing.T) {
	stream := []byte("EHLO x\r\nAUTH PLAIN c2VjcmV0\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	secret := int64(bytes.Index(stream, []byte("c2VjcmV0")))
	from := int64(bytes.Index(stream, []byte("Subject")))
	to := int64(bytes.Index(stream, []byte("QUIT")))
	for seed := int64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		c := &capture{max: 1 << 20}
		if seed%3 == 0 {
			c.max = 40 + rng.Intn(80) // some bytes get elided
		}
		for pos := 0; pos < len(stream); {
			n := min(1+rng.Intn(20), len(stream)-pos)
			c.add(DirClient, 0, stream[pos:pos+n])
			if rng.Intn(2) == 0 {
				c.add(DirServer, 0, []byte("250 ok\r\n"))
			}
			pos += n
		}
		c.redactClient(secret, secret+8, []byte(authMark))
		c.replaceClient(from, to, []byte("REF"))
		enc := encodeCapture(c.recs)
		if bytes.Contains(enc, []byte("c2V")) || bytes.Contains(enc, []byte("cmV0")) {
			t.Fatalf("seed %d: secret kept: %q", seed, enc)
		}
		var got []byte
		var total, elided int64
		for _, r := range c.recs {
			if r.Dir == DirClient {
				got = append(got, r.Data...)
				total += r.keptLen() + r.Elided
				elided += r.Elided
			}
			if r.Dir == DirMail {
				got = append(got, "<REF>"...)
			}
		}
		if total != int64(len(stream))-(to-from) {
			t.Fatalf("seed %d: records stand for %d client bytes, want %d", seed, total, int64(len(stream))-(to-from))
		}
		want := string(stream[:secret]) + authMark + string(stream[secret+8:from]) + "<REF>" + string(stream[to:])
		if elided == 0 && string(got) != want {
			t.Fatalf("seed %d: got %q want %q", seed, got, want)
		}
		if _, err := ParseCapture(enc); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		c.release()
	}
}

// TestCaptureRedactsAUTH: smtpd offers no AUTH, but a client set up for
// submission sends its credentials anyway; the capture (stored in dbd,
// shown by replay tools) must not keep them, in the AUTH line or in the
// lines after it, and the redacted capture must still replay with the
// replies the session got.
func TestCaptureRedactsAUTH(t *testing.T) {
	// "\x00user\x00hunter2" and friends, base64.
	lines := []string{
		"EHLO client.test",
		"AUTH PLAIN AHVzZXIAaHVudGVyMg==",
		"AUTH LOGIN",
		"dXNlcg==",
		"aHVudGVyMg==",
		"auth plain",
		"AHVzZXIAaHVudGVyMw==",
		"AUTH LOGIN aHVudGVyNA",
		"AUTH PLAIN hunter5!",
		"NOOP",
		"QUIT",
	}
	secrets := []string{"AHVzZXIAaHVudGVyM", "dXNlcg", "aHVudGVy", "hunter"}
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			cfg := Config{SoftErrors: -1}
			if useTLS {
				cfg.TLS = selfSigned(t)
			}
			srv := startServer(t, cfg)
			play := func(send func(c *client, line string) string) []string {
				c := dial(t, srv.addr)
				c.expect("220 ")
				var codes []string
				for i, line := range lines {
					if useTLS && i == 1 {
						c.cmd("STARTTLS", "220 ")
						c.tlsUpgrade()
						c.cmd("EHLO client.test", "250")
					}
					codes = append(codes, send(c, line)[:3])
				}
				return codes
			}
			live := play(func(c *client, line string) string { return c.cmd(line, "") })
			waitClosed(t, srv)
			capt := srv.be.Conns()[0].Capture()
			for _, s := range secrets {
				if bytes.Contains(capt, []byte(s)) {
					t.Errorf("capture keeps %q:\n%s", s, capt)
				}
			}
			recs, err := ParseCapture(capt)
			if err != nil {
				t.Fatal(err)
			}
			var stream []byte
			for _, r := range recs {
				if r.Dir == DirClient {
					stream = append(stream, r.Data...)
				}
			}
			for _, want := range []string{"AUTH PLAIN REDACTED\r\n", "AUTH LOGIN\r\nREDACTED\r\nREDACTED\r\nauth plain\r\nREDACTED\r\n", "AUTH LOGIN [redacted]\r\n", "AUTH PLAIN [redacted]\r\nNOOP\r\nQUIT\r\n"} {
				if !bytes.Contains(stream, []byte(want)) {
					t.Errorf("client stream lacks %q:\n%s", want, stream)
				}
			}
			// A replay sends the capture's lines: the live server must
			// answer them as it answered the session.
			sent := strings.Split(strings.TrimSuffix(string(stream), "\r\n"), "\r\n")
			if useTLS {
				sent = append(sent[:1], sent[3:]...) // STARTTLS and its EHLO are played by play
			}
			if len(sent) != len(lines) {
				t.Fatalf("capture has %d lines, sent %d: %q", len(sent), len(lines), sent)
			}
			i := 0
			replayed := play(func(c *client, _ string) string {
				i++
				return c.cmd(sent[i-1], "")
			})
			if strings.Join(replayed, " ") != strings.Join(live, " ") {
				t.Errorf("replay answered %v, the session got %v", replayed, live)
			}
		})
	}
}

// TestCaptureRedactsLongAUTH: an XOAUTH2 token makes an AUTH line longer
// than CommandLineMax; the line is refused by its length, and the capture
// must not keep the token either. The mark keeps the length, so a replay
// is refused alike.
func TestCaptureRedactsLongAUTH(t *testing.T) {
	token := strings.Repeat("dG9rZW4t", 400) // 3200 bytes
	for _, line := range []string{"AUTH XOAUTH2 " + token + "\r\n", "AUTH XOAUTH2 " + token} {
		srv := startServer(t, Config{})
		c := greeted(t, srv.addr)
		c.send(line)
		c.expect("500 5.5.2")
		c.expectClosed()
		waitClosed(t, srv)
		capt := srv.be.Conns()[0].Capture()
		if bytes.Contains(capt, []byte("dG9rZW4t")) {
			t.Fatalf("capture keeps the token:\n%.300s", capt)
		}
		recs, err := ParseCapture(capt)
		if err != nil {
			t.Fatal(err)
		}
		var stream []byte
		for _, r := range recs {
			if r.Dir == DirClient {
				stream = append(stream, r.Data...)
			}
		}
		want := "EHLO client.test\r\nAUTH XOAUTH2 " + strings.Repeat("X", len(token))
		if !strings.HasPrefix(string(stream), want) {
			t.Fatalf("client stream = %.100q..., want %.100q...", stream, want)
		}
	}
}
