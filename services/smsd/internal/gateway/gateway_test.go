package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
