package external

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

const testMail = "From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

// fakeSpamd is a spamc-protocol server on loopback that answers every
// request with answer (nil: never answers, holds the connection open). It
// records the requests it read.
type fakeSpamd struct {
	ln     net.Listener
	answer []byte
	mu     sync.Mutex
	reqs   []spamcReq
	wg     sync.WaitGroup
	quit   chan struct{}
}

type spamcReq struct {
	line   string
	header textproto.MIMEHeader
	body   string
}

func startFakeSpamd(t *testing.T, answer []byte) *fakeSpamd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &fakeSpamd{ln: ln, answer: answer, quit: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		close(s.quit)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *fakeSpamd) serve(c net.Conn) {
	defer c.Close()
	tr := textproto.NewReader(bufio.NewReader(c))
	line, err := tr.ReadLine()
	if err != nil {
		return
	}
	h, err := tr.ReadMIMEHeader()
	if err != nil {
		return
	}
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(tr.R, body); err != nil {
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, spamcReq{line, h, string(body)})
	s.mu.Unlock()
	if s.answer == nil {
		<-s.quit
		return
	}
	_, _ = c.Write(s.answer)
}

func TestSpamAssassinCheck(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		want    Result
		wantErr error
	}{
		{"spam with rules", "SPAMD/1.1 0 EX_OK\r\nContent-length: 25\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,MISSING_MID,NO_RECE",
			Result{Score: 1000, Threshold: 5, Spam: true, Engine: "spamassassin", Rules: []string{"GTUBE", "MISSING_MID", "NO_RECE"}}, nil},
		{"ham", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 0.8 / 5.0\r\n\r\n",
			Result{Score: 0.8, Threshold: 5, Engine: "spamassassin"}, nil},
		{"error reply", "SPAMD/1.0 76 Bad header line: (EOF)\r\n", Result{}, &SpamdError{}},
		{"garbage", "220 smtp.example.com ESMTP\r\n", Result{}, ErrMalformed},
		{"closed without answer", "", Result{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFakeSpamd(t, []byte(tt.answer))
			sa := NewSpamAssassin(SpamAssassinConfig{Addr: s.ln.Addr().String(), User: "bob", Limits: Limits{Timeout: 2 * time.Second}})
			got, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail))
			if !sameErr(err, tt.wantErr) || !equalResult(got, tt.want) {
				t.Fatalf("Check = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(s.reqs))
			}
			r := s.reqs[0]
			if r.line != "SYMBOLS SPAMC/1.5" || r.header.Get("User") != "bob" || r.body != testMail {
				t.Errorf("request = %q %v %q, want SYMBOLS SPAMC/1.5, User bob, the mail", r.line, r.header, r.body)
			}
		})
	}
}

func TestSpamAssassinLimits(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		s := startFakeSpamd(t, nil)
		sa := NewSpamAssassin(SpamAssassinConfig{Addr: s.ln.Addr().String(), Limits: Limits{Timeout: 200 * time.Millisecond}})
		start := time.Now()
		_, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Check against a silent server = %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Check took %v, want about 200ms", d)
		}
	})
	t.Run("too large", func(t *testing.T) {
		sa := NewSpamAssassin(SpamAssassinConfig{Addr: "127.0.0.1:1", Limits: Limits{MaxBytes: 10}})
		if _, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Check of a large mail = %v, want ErrTooLarge", err)
		}
	})
	t.Run("answer too long", func(t *testing.T) {
		long := "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0 / 5\r\n\r\n" + strings.Repeat("RULE,", 1000)
		s := startFakeSpamd(t, []byte(long))
		sa := NewSpamAssassin(SpamAssassinConfig{Addr: s.ln.Addr().String(), Limits: Limits{MaxResponseBytes: 1024}})
		if _, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check with a 5 kB answer = %v, want ErrMalformed", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		sa := NewSpamAssassin(SpamAssassinConfig{Addr: addr})
		if _, err := sa.Check(t.Context(), signal.Envelope{}, []byte(testMail)); err == nil {
			t.Errorf("Check against a closed port = nil error, want one")
		}
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		s := startFakeSpamd(t, nil)
		sa := NewSpamAssassin(SpamAssassinConfig{Addr: s.ln.Addr().String()})
		ctx, cancel := contextWithCancelAfter(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := sa.Check(ctx, signal.Envelope{}, []byte(testMail)); err == nil {
			t.Errorf("Check with a cancelled ctx = nil error, want one")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Check took %v after cancel, want about 100ms", d)
		}
	})
}

func TestRspamdCheck(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		answer  string
		want    Result
		wantErr error
	}{
		{"add header", 200, `{"is_skipped":false,"score":9.5,"required_score":15.0,"action":"add header","symbols":{"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1}},"message-id":"1@example.com"}`,
			Result{Score: 9.5, Threshold: 15, Spam: true, Engine: "rspamd", Rules: []string{"BAYES_SPAM"}}, nil},
		{"no action", 200, `{"is_skipped":false,"score":1.2,"required_score":15.0,"action":"no action","symbols":{}}`,
			Result{Score: 1.2, Threshold: 15, Engine: "rspamd"}, nil},
		{"server error", 500, `{"error":"internal"}`, Result{}, errRspamd},
		{"html from a proxy", 200, `<html><body>It works!</body></html>`, Result{}, ErrMalformed},
		{"skipped", 200, `{"is_skipped":true,"score":0,"required_score":15,"action":"no action"}`, Result{}, ErrSkipped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotReq *http.Request
			var gotBody string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotReq, gotBody = r, string(b)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.answer)
			}))
			t.Cleanup(srv.Close)
			rs := NewRspamd(RspamdConfig{URL: srv.URL + "/", Limits: Limits{Timeout: 2 * time.Second}})
			env := signal.Envelope{ClientIP: "192.0.2.1", Helo: "mx.example.com", From: "a@example.com", Rcpt: "b@example.org"}
			got, err := rs.Check(t.Context(), env, []byte(testMail))
			if !sameErr(err, tt.wantErr) || !equalResult(got, tt.want) {
				t.Fatalf("Check = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			if gotReq.Method != http.MethodPost || gotReq.URL.Path != "/checkv2" || gotBody != testMail ||
				gotReq.Header.Get("IP") != "192.0.2.1" || gotReq.Header.Get("Rcpt") != "b@example.org" ||
				gotReq.Header.Get("From") != "a@example.com" || gotReq.Header.Get("Helo") != "mx.example.com" {
				t.Errorf("request = %s %s %v, want POST /checkv2 with the envelope headers and the mail", gotReq.Method, gotReq.URL, gotReq.Header)
			}
		})
	}
}

func TestRspamdLimits(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		rs := NewRspamd(RspamdConfig{URL: srv.URL, Limits: Limits{Timeout: 200 * time.Millisecond}})
		start := time.Now()
		if _, err := rs.Check(t.Context(), signal.Envelope{}, []byte(testMail)); err == nil {
			t.Errorf("Check against a silent server = nil error, want a timeout")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Check took %v, want about 200ms", d)
		}
	})
	t.Run("answer too long", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"score":1,"required_score":15,"action":"no action","pad":"`+strings.Repeat("x", 4096)+`"}`)
		}))
		t.Cleanup(srv.Close)
		rs := NewRspamd(RspamdConfig{URL: srv.URL, Limits: Limits{MaxResponseBytes: 1024}})
		if _, err := rs.Check(t.Context(), signal.Envelope{}, []byte(testMail)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check with a 4 kB answer = %v, want ErrMalformed", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		rs := NewRspamd(RspamdConfig{URL: "http://127.0.0.1:1", Limits: Limits{MaxBytes: 10}})
		if _, err := rs.Check(t.Context(), signal.Envelope{}, []byte(testMail)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Check of a large mail = %v, want ErrTooLarge", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := (SpamAssassinConfig{Addr: "127.0.0.1:783"}).Validate(); err != nil {
		t.Errorf("valid spamassassin config: %v", err)
	}
	err := (SpamAssassinConfig{Addr: "nohost", User: "a\nb", Limits: Limits{Timeout: -1}}).Validate()
	if err == nil || !strings.Contains(err.Error(), "address") || !strings.Contains(err.Error(), "line break") || !strings.Contains(err.Error(), "negative") {
		t.Errorf("bad spamassassin config: %v, want all three problems", err)
	}
	if err := (RspamdConfig{URL: "http://127.0.0.1:11333"}).Validate(); err != nil {
		t.Errorf("valid rspamd config: %v", err)
	}
	if err := (RspamdConfig{URL: "127.0.0.1:11333"}).Validate(); err == nil {
		t.Errorf("rspamd url without scheme: nil error, want one")
	}
}

func contextWithCancelAfter(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	timer := time.AfterFunc(d, cancel)
	return ctx, func() { timer.Stop(); cancel() }
}
