package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	min, max := time.Second, 10*time.Second
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := Backoff(i+1, min, max); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := Backoff(1000, min, max); got != max {
		t.Errorf("Backoff(1000) = %v, want %v", got, max)
	}
}

func TestLimiter(t *testing.T) {
	l := &Limiter{N: 2, Window: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, _ := l.Reserve("+1", t0); !ok {
		t.Fatal("first send refused")
	}
	if ok, _ := l.Reserve("+1", t0.Add(time.Second)); !ok {
		t.Fatal("second send refused")
	}
	ok, at := l.Reserve("+1", t0.Add(2*time.Second))
	if ok || !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("third send = %v, %v; want refused until %v", ok, at, t0.Add(time.Minute))
	}
	if ok, _ := l.Reserve("+2", t0.Add(2*time.Second)); !ok {
		t.Error("another number is limited too")
	}
	if ok, _ := l.Reserve("+1", t0.Add(time.Minute)); !ok {
		t.Error("send after the window refused")
	}
	l.Release("+1")
	if ok, _ := l.Reserve("+1", t0.Add(time.Minute)); !ok {
		t.Error("a released reservation still counts")
	}
	if ok, _ := (&Limiter{}).Reserve("+1", t0); !ok {
		t.Error("the zero Limiter limits")
	}
}

func TestHTTPRequest(t *testing.T) {
	g, err := NewHTTP(HTTPConfig{URL: "https://sms.example/send?to={{urlquery .To}}", Secret: "s3cret",
		Headers: []string{"Authorization: Bearer {{.Secret}}"}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := g.Request(context.Background(), "+4917012345", `say "hi"`)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if req.Method != "POST" || req.URL.String() != "https://sms.example/send?to=%2B4917012345" ||
		req.Header.Get("Authorization") != "Bearer s3cret" || req.Header.Get("Content-Type") != "application/json" ||
		string(body) != `{"to":"+4917012345","text":"say \"hi\""}` {
		t.Errorf("request = %s %s %v %s", req.Method, req.URL, req.Header, body)
	}
	g, err = NewHTTP(HTTPConfig{URL: "http://x/", Method: "GET", Headers: []string{"X-T: {{.Text}}"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Request(context.Background(), "+1", "a\r\nEvil: 1"); err == nil {
		t.Error("a header value with a line break was accepted")
	}
	for _, bad := range []HTTPConfig{{}, {URL: "{{.Nope"}, {URL: "http://x", Headers: []string{"no colon"}}} {
		if _, err := NewHTTP(bad); err == nil {
			t.Errorf("NewHTTP(%+v) accepted", bad)
		}
	}
}

// TestHTTPMethod: --gateway-method get went out as the literal method
// "get" (which servers answer with 405) and with a body; the method is
// now upper-cased, and one that is no SMS API's method stops smsd at
// start instead of failing every SMS until it is given up.
func TestHTTPMethod(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + string(b)
	}))
	defer srv.Close()
	g, err := NewHTTP(HTTPConfig{URL: srv.URL + "/?to={{urlquery .To}}", Method: "get"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(context.Background(), "+1", "hi"); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "GET " {
		t.Errorf("the gateway got %q, want a GET without a body", m)
	}
	for _, m := range []string{"", " post ", "Put", "patch"} {
		if _, err := NewHTTP(HTTPConfig{URL: "http://x/", Method: m}); err != nil {
			t.Errorf("method %q: %v", m, err)
		}
	}
	for _, m := range []string{"FETCH", "DELETE", "GE T", "CONNECT"} {
		if _, err := NewHTTP(HTTPConfig{URL: "http://x/", Method: m}); err == nil {
			t.Errorf("method %q accepted", m)
		}
	}
}

func TestHTTPSend(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	g, err := NewHTTP(HTTPConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(context.Background(), "+1", "x"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("first Send = %v, want the 503", err)
	}
	if err := g.Send(context.Background(), "+1", "x"); err != nil {
		t.Errorf("second Send = %v", err)
	}
}

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	g, err := NewCommand(CommandConfig{Argv: []string{"sh", "-c", `cat > "$0"; echo "$1" >> "$0"`, out, "{{.To}}"}})
	if err != nil {
		t.Fatal(err)
	}
	args, err := g.Args("+49", "hello")
	if err != nil || args[4] != "+49" {
		t.Fatalf("Args = %q, %v", args, err)
	}
	if err := g.Send(context.Background(), "+49", "hello"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if string(b) != "hello\n+49\n" {
		t.Errorf("command got %q", b)
	}
	g, _ = NewCommand(CommandConfig{Argv: []string{"sh", "-c", "echo no way >&2; exit 3"}})
	if err := g.Send(context.Background(), "+1", "x"); err == nil || !strings.Contains(err.Error(), "no way") {
		t.Errorf("failing command: %v", err)
	}
}

// TestCommandErrorHidesSecret: a failing command's output goes into the
// error smsd logs; the credential a script got as {{.Secret}} and
// printed (echoing its arguments, or traced by sh -x) is replaced there,
// as in the HTTP gateway's errors. Before, it reached the log as it was.
func TestCommandErrorHidesSecret(t *testing.T) {
	const secret = "s3cr/et+key"
	g, err := NewCommand(CommandConfig{Argv: []string{"sh", "-c", `echo "send $1 failed, url https://x/?k=$2" >&2; exit 1`, "sh",
		"{{.Secret}}", "{{urlquery .Secret}}"}, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Send(context.Background(), "+1", "x")
	if err == nil || !strings.Contains(err.Error(), "send [secret] failed, url https://x/?k=[secret]") {
		t.Fatalf("Send = %v, want the output with the secret replaced", err)
	}
	for _, v := range []string{secret, url.QueryEscape(secret)} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error %q holds the secret as %q", err, v)
		}
	}
}

// TestHTTPRedirectIsFailure: a gateway answering 3xx has not taken the
// SMS. Following the redirect turned the POST into a GET without the
// body, counted the final 200 as sent (the SMS was lost) and carried the
// API key header to the other host.
func TestHTTPRedirectIsFailure(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/moved", http.StatusFound)
	}))
	defer srv.Close()
	g, err := NewHTTP(HTTPConfig{URL: srv.URL, Secret: "k3y", Headers: []string{"X-Api-Key: {{.Secret}}"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(context.Background(), "+1", "x"); err == nil || !strings.Contains(err.Error(), "302") {
		t.Errorf("Send to a redirecting gateway = %v, want a failed attempt with the 302", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestHTTPErrorHidesSecret: an API key in the URL (query or path, raw or
// escaped) or echoed in an answer must not reach the error, which is
// logged.
func TestHTTPErrorHidesSecret(t *testing.T) {
	const secret = "s3cr/et+key"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens: the request fails with a *url.Error
	g, err := NewHTTP(HTTPConfig{URL: "http://" + closed + "/bot{{.Secret}}/send?key={{urlquery .Secret}}&k2={{.Secret}}", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Send(context.Background(), "+1", "x")
	if err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
	for _, v := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error %q holds the secret as %q", err, v)
		}
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("error %v is no longer a *url.Error", err)
	}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad key "+r.URL.Query().Get("key"), http.StatusUnauthorized)
	}))
	defer echo.Close()
	g, err = NewHTTP(HTTPConfig{URL: echo.URL + "/?key={{urlquery .Secret}}", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(context.Background(), "+1", "x"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Send = %v, want a 401 without the secret", err)
	}
}

// TestTemplatesCheckedAtStart: a template that cannot run is a
// configuration error at start, not a failure of every SMS.
func TestTemplatesCheckedAtStart(t *testing.T) {
	for _, c := range []HTTPConfig{
		{URL: "http://x/", Body: `{"t":{{json .Txt}}}`},
		{URL: "http://x/{{.Nope}}"},
		{URL: "http://x/", Headers: []string{"X-A: {{.Secrt}}"}},
		{URL: "http://x/", Body: `{{json .To 1}}`},
		{URL: "://no-scheme/{{.To}}"},
	} {
		if _, err := NewHTTP(c); err == nil {
			t.Errorf("NewHTTP(%+v) accepted", c)
		}
	}
	if _, err := NewCommand(CommandConfig{Argv: []string{"sendsms", "{{.Number}}"}}); err == nil {
		t.Error("NewCommand with {{.Number}} accepted")
	}
}

// TestCommandTimeoutKillsChildren: a gateway script whose child hangs
// with the output pipe open. Killing only the shell left Send waiting
// for the pipe until the child ended (here 20 s; forever for a hung
// child). The guard below detects the hang; it is not a speed check.
func TestCommandTimeoutKillsChildren(t *testing.T) {
	g, err := NewCommand(CommandConfig{Argv: []string{"sh", "-c", "sleep 20; echo late"}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Send(context.Background(), "+1", "x") }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a command killed at its timeout succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send hangs after the command's timeout")
	}
}

// TestCommandOutputBounded: only the logged start of a command's output
// is kept.
func TestCommandOutputBounded(t *testing.T) {
	w := &headWriter{max: maxOutput}
	chunk := []byte(strings.Repeat("y", 4096))
	for range 1000 {
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := len(w.String()); got != maxOutput {
		t.Errorf("kept %d bytes, want %d", got, maxOutput)
	}
	g, err := NewCommand(CommandConfig{Argv: []string{"sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' z; exit 1"}})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Send(context.Background(), "+1", "x")
	if err == nil || strings.Count(err.Error(), "z") != maxOutput {
		t.Errorf("Send of a command with much output = %.100v..., want its first %d bytes", err, maxOutput)
	}
}

// TestLimiterZeroWindow: a zero window is the default hour (a zero
// duration flag means its default), not "no limit".
func TestLimiterZeroWindow(t *testing.T) {
	l := &Limiter{N: 1}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, _ := l.Reserve("+1", t0); !ok {
		t.Fatal("first send refused")
	}
	ok, at := l.Reserve("+1", t0.Add(time.Minute))
	if ok || !at.Equal(t0.Add(DefaultWindow)) {
		t.Errorf("second send in the hour = %v, %v; want refused until %v", ok, at, t0.Add(DefaultWindow))
	}
}

// TestHTTPStatusPermanent: every answer but 2xx was a temporary failure,
// so a number the gateway refuses (400), or a request it will never
// take, was sent again until --max-tries. A 4xx answer is now a
// *StatusError that is Permanent, except 408, 425 and 429, which are
// about timing; a 3xx and a 5xx stay temporary. The secret the answer
// echoes stays out of the error.
func TestHTTPStatusPermanent(t *testing.T) {
	const secret = "k3y/s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ To string }
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("gateway got a body that does not decode: %v", err)
		}
		code, err := strconv.Atoi(m.To)
		if err != nil {
			t.Errorf("gateway got number %q", m.To)
			code = http.StatusTeapot
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		io.WriteString(w, "no: key "+r.URL.Query().Get("key"))
	}))
	defer srv.Close()
	g, err := NewHTTP(HTTPConfig{URL: srv.URL + "/?key={{urlquery .Secret}}", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code      int
		permanent bool
	}{
		{400, true}, {410, true}, {413, true}, {422, true},
		{408, false}, {425, false}, {429, false},
		{401, false}, {403, false}, {404, false}, {405, false}, {407, false},
		{302, false}, {500, false}, {502, false}, {503, false}, {504, false},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			err := g.Send(context.Background(), strconv.Itoa(tc.code), "x")
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Send = %v, want a *StatusError", err)
			}
			if se.Code != tc.code || se.Permanent() != tc.permanent {
				t.Errorf("Send = %v: code %d, permanent %v; want %d, %v", err, se.Code, se.Permanent(), tc.code, tc.permanent)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tc.code)) || !strings.Contains(err.Error(), "no: key [secret]") {
				t.Errorf("error %q lacks the answer", err)
			}
			for _, v := range []string{secret, url.QueryEscape(secret)} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q holds the secret as %q", err, v)
				}
			}
		})
	}
}

// TestRetryAfter: the wait a gateway asks for with its 429 or 503, in
// seconds or as a date measured against the answer's Date.
func TestRetryAfter(t *testing.T) {
	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, retry, date string
		want              time.Duration
	}{
		{"none", "", "", 0},
		{"seconds", "120", "", 2 * time.Minute},
		{"spaces", " 7 ", "", 7 * time.Second},
		{"zero", "0", "", 0},
		{"negative", "-5", "", 0},
		{"fraction", "1.5", "", 0},
		{"word", "soon", "", 0},
		{"huge", "99999999999999999999999", "", maxRetryAfter},
		{"day and more", "86401", "", maxRetryAfter},
		{"date", date.Add(90 * time.Second).Format(http.TimeFormat), date.Format(http.TimeFormat), 90 * time.Second},
		{"date without Date", date.Add(90 * time.Second).Format(http.TimeFormat), "", 0},
		{"date past", date.Add(-time.Minute).Format(http.TimeFormat), date.Format(http.TimeFormat), 0},
		{"date far", date.Add(48 * time.Hour).Format(http.TimeFormat), date.Format(http.TimeFormat), maxRetryAfter},
	} {
		h := http.Header{}
		if tc.retry != "" {
			h.Set("Retry-After", tc.retry)
		}
		if tc.date != "" {
			h.Set("Date", tc.date)
		}
		if got := retryAfter(h); got != tc.want {
			t.Errorf("%s: retryAfter(%q, Date %q) = %v, want %v", tc.name, tc.retry, tc.date, got, tc.want)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	g, err := NewHTTP(HTTPConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var se *StatusError
	if err := g.Send(context.Background(), "+1", "x"); !errors.As(err, &se) || se.Permanent() || se.RetryAfter() != 2*time.Minute {
		t.Errorf("Send to a gateway answering 429 with Retry-After: 120 = %v, want a temporary error asking for 2m0s", err)
	}
}
