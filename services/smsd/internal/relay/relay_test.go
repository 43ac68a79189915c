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

// replySink is an SMTP server on loopback that answers the commands
// named in replies (MAIL, RCPT, DATA, and "." for the end of the data)
// with the given reply line, and everything else with success.
func replySink(t *testing.T, replies map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				reply := func(cmd, ok string) {
					if v, set := replies[cmd]; set {
						io.WriteString(c, v+"\r\n")
					} else {
						io.WriteString(c, ok+"\r\n")
					}
				}
				io.WriteString(c, "220 sink\r\n")
				inData := false
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					if inData {
						if line == "." {
							inData = false
							reply(".", "250 ok")
						}
						continue
					}
					verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
					switch verb {
					case "EHLO":
						io.WriteString(c, "250 sink\r\n")
					case "DATA":
						reply("DATA", "354 go on")
						_, refused := replies["DATA"]
						inData = !refused
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						reply(verb, "250 ok")
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// TestPermanent: a 5xx answer to RCPT TO or DATA refuses this address or
// this mail for good, and Permanent says so, so that smsd gives the copy
// up at once; a 4xx answer, a dead relay, or a 5xx to MAIL FROM (about
// --forward-from, the same for every copy) is retried.
func TestPermanent(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	for _, tc := range []struct {
		name      string
		addr      string
		permanent bool
	}{
		{"550 to RCPT", replySink(t, map[string]string{"RCPT": "550 5.1.1 no such user"}), true},
		{"554 to DATA", replySink(t, map[string]string{"DATA": "554 5.5.1 no valid recipients"}), true},
		{"552 at the end of data", replySink(t, map[string]string{".": "552 5.3.4 message too big"}), true},
		{"450 to RCPT", replySink(t, map[string]string{"RCPT": "450 4.2.1 try later"}), false},
		{"451 at the end of data", replySink(t, map[string]string{".": "451 4.3.0 local error"}), false},
		{"550 to MAIL FROM", replySink(t, map[string]string{"MAIL": "550 5.7.1 sender refused"}), false},
		{"no relay", deadAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Config{Addr: tc.addr, TLS: TLSNone, Helo: "smsd.test", Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Send(context.Background(), "u@dest.test", []byte("Subject: a\r\n\r\nhi\r\n"))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := Permanent(err); got != tc.permanent {
				t.Errorf("Permanent(%v) = %v, want %v", err, got, tc.permanent)
			}
		})
	}
	// The sink itself accepts a mail it is not told to refuse.
	r, err := New(Config{Addr: replySink(t, nil), TLS: TLSNone, Helo: "smsd.test", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Send(context.Background(), "u@dest.test", []byte("Subject: a\r\n\r\nhi\r\n")); err != nil {
		t.Errorf("a relay that refuses nothing: %v", err)
	}
}
