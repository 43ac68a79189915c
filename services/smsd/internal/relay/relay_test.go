package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawSink is an SMTP server on loopback that records the DATA of each
// mail exactly as it came over the wire, dot-stuffing included: what a
// receiving MTA would parse.
type rawSink struct {
	ln net.Listener
	mu sync.Mutex
	// data holds each mail's bytes between the 354 reply and the
	// terminating CRLF.CRLF (the CRLF before the dot included).
	data [][]byte
	wg   sync.WaitGroup
}

func startRawSink(t *testing.T) *rawSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSink{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *rawSink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, "220 sink\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"):
			io.WriteString(c, "250-sink\r\n250 8BITMIME\r\n")
		case cmd == "DATA":
			io.WriteString(c, "354 go on\r\n")
			// The strict end of DATA: CRLF . CRLF, or . CRLF first.
			var data []byte
			for !bytes.HasSuffix(data, []byte("\r\n.\r\n")) && !bytes.Equal(data, []byte(".\r\n")) {
				b, err := r.ReadByte()
				if err != nil {
					return
				}
				data = append(data, b)
			}
			s.mu.Lock()
			s.data = append(s.data, data[:len(data)-3])
			s.mu.Unlock()
			io.WriteString(c, "250 ok\r\n")
		case cmd == "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

func (s *rawSink) last(t *testing.T) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.data) == 0 {
		t.Fatal("the sink got no mail")
	}
	return s.data[len(s.data)-1]
}

// TestRelayCanonicalOnTheWire relays stored mails that hold the byte
// sequences of SMTP smuggling and checks what a receiver sees: no bare
// CR or LF anywhere, no line that is a lone dot before the real end, and
// after unstuffing exactly the mail with its line ends made CRLF
// (TEST-CATALOG item 10).
func TestRelayCanonicalOnTheWire(t *testing.T) {
	sink := startRawSink(t)
	r, err := New(Config{Addr: sink.ln.Addr().String(), TLS: TLSNone, Helo: "smsd.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, mail, want string }{
		{"CR dot CR LF", "Subject: a\r\n\r\nx\r.\r\nMAIL FROM:<evil@x>\r\n", "Subject: a\r\n\r\nx\r\n..\r\nMAIL FROM:<evil@x>\r\n"},
		{"LF dot CR LF", "Subject: a\r\n\r\nx\n.\r\nRSET\r\n", "Subject: a\r\n\r\nx\r\n..\r\nRSET\r\n"},
		{"LF dot LF", "Subject: a\r\n\r\nx\n.\nQUIT\n", "Subject: a\r\n\r\nx\r\n..\r\nQUIT\r\n"},
		{"CR LF dot CR", "Subject: a\r\n\r\nx\r\n.\rDATA\r\n", "Subject: a\r\n\r\nx\r\n..\r\nDATA\r\n"},
		{"CR dot CR", "Subject: a\r\n\r\nx\r.\ry", "Subject: a\r\n\r\nx\r\n..\r\ny\r\n"},
		{"lone CR and LF", "Subject: a\r\n\r\none\rtwo\nthree\r\n", "Subject: a\r\n\r\none\r\ntwo\r\nthree\r\n"},
		{"CR CR LF", "Subject: a\r\r\nX: b\r\n\r\nbody\r\n", "Subject: a\r\nX: b\r\n\r\nbody\r\n"},
		{"leading dots", ".\r\n..x\r\n.y", "..\r\n...x\r\n..y\r\n"},
		{"clean", "Subject: a\r\n\r\n.dot\r\nend\r\n", "Subject: a\r\n\r\n..dot\r\nend\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.Send(context.Background(), "u@dest.test", []byte(tc.mail)); err != nil {
				t.Fatal(err)
			}
			got := sink.last(t)
			if hasBareLineEnd(got) {
				t.Fatalf("bare CR or LF on the wire: %q", got)
			}
			lines := strings.Split(strings.TrimSuffix(string(got), "\r\n"), "\r\n")
			for i, l := range lines {
				if l == "." {
					t.Fatalf("line %d is a lone dot (an end of DATA): %q", i, got)
				}
			}
			if string(got) != tc.want {
				t.Fatalf("on the wire %q, want %q", got, tc.want)
			}
		})
	}
}
