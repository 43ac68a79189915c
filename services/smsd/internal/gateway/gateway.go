// Package gateway sends SMS: through an HTTP API (any provider whose
// request can be written as URL, method, headers and a body template) or a
// local command that gets the text on stdin. It also holds the retry
// backoff and the per-number rate limit, both pure.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"
)

// Gateway sends one SMS. Send returns nil only when the gateway took the
// message. An error with a method Permanent() bool that returns true
// (StatusError for most 4xx answers) says that trying again cannot help,
// and the engine gives the number up at once; one with a method
// RetryAfter() time.Duration asks for a wait before the next attempt.
// Implementations are safe for concurrent use.
type Gateway interface {
	Send(ctx context.Context, to, text string) error
	// Name is a bounded label for metrics: "http" or "command".
	Name() string
}

// Fields are what templates see: {{.To}}, {{.Text}}, {{.Secret}}.
type Fields struct {
	To, Text, Secret string
}

var funcs = template.FuncMap{
	"json": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
	"urlquery": url.QueryEscape,
}

func parse(name, src string) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("gateway: %s template: %w", name, err)
	}
	return t, nil
}

func run(t *template.Template, f Fields) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, f); err != nil {
		return "", fmt.Errorf("gateway: %s template: %w", t.Name(), err)
	}
	return b.String(), nil
}

// HTTPConfig configures an HTTP gateway. URL, header values and Body are
// text/template sources over Fields, with the functions json (a JSON
// string literal) and urlquery.
type HTTPConfig struct {
	URL string // required
	// Method is GET, POST, PUT or PATCH, in any case; default POST. A GET
	// has no body.
	Method string
	// Headers are "Name: value" lines. Without a Content-Type header and
	// with the default body, Content-Type is application/json.
	Headers []string
	// Body defaults to {"to":{{json .To}},"text":{{json .Text}}}.
	Body string
	// Secret is the credential templates may use as {{.Secret}} (read
	// from a file or an environment variable by the caller).
	Secret string
	// Timeout bounds one request. Default 10 s.
	Timeout time.Duration
	// Client is the HTTP client. Default: a new http.Client.
	Client *http.Client
}

// DefaultBody is the HTTP body when HTTPConfig.Body is empty.
const DefaultBody = `{"to":{{json .To}},"text":{{json .Text}}}`

// HTTP is an HTTP gateway. Create it with NewHTTP.
type HTTP struct {
	cfg     HTTPConfig
	url     *template.Template
	body    *template.Template
	headers []header
}

type header struct {
	name string
	val  *template.Template
}

// NewHTTP checks cfg and returns the gateway.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	var errs []error
	if cfg.URL == "" {
		errs = append(errs, errors.New("gateway: URL is required"))
	}
	// The method is sent as written: "get" would go out as a lower-case
	// method most servers refuse (405), and a body-less GET is only
	// recognised by its upper-case name. Any method but the four an SMS
	// API may use is most likely a typo, so it stops smsd at start.
	cfg.Method = strings.ToUpper(strings.TrimSpace(cfg.Method))
	switch cfg.Method {
	case "":
		cfg.Method = http.MethodPost
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		errs = append(errs, fmt.Errorf("gateway: method %q (want GET, POST, PUT or PATCH)", cfg.Method))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	// A copy of the client that does not follow redirects: a followed
	// 301/302/303 turns the POST into a GET without the body, and the
	// final 200 would count as a sent SMS that no gateway took; and a
	// redirect to another host (or to http) would carry custom headers
	// such as an API key there. A 3xx answer is a failed attempt.
	client := &http.Client{}
	if cfg.Client != nil {
		c := *cfg.Client
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = client
	defaultBody := cfg.Body == ""
	if defaultBody {
		cfg.Body = DefaultBody
	}
	g := &HTTP{cfg: cfg}
	var err error
	if g.url, err = parse("url", cfg.URL); err != nil {
		errs = append(errs, err)
	}
	if g.body, err = parse("body", cfg.Body); err != nil {
		errs = append(errs, err)
	}
	hasType := false
	for _, h := range cfg.Headers {
		name, val, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
			errs = append(errs, fmt.Errorf("gateway: header %q: want \"Name: value\"", h))
			continue
		}
		t, err := parse("header "+name, strings.TrimSpace(val))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hasType = hasType || strings.EqualFold(name, "Content-Type")
		g.headers = append(g.headers, header{name: name, val: t})
	}
	if !hasType && defaultBody {
		g.headers = append(g.headers, header{name: "Content-Type", val: template.Must(parse("ct", "application/json"))})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Build one request now: a template that cannot run ({{.Txt}}) or a
	// URL that does not parse would otherwise fail every SMS until the
	// rows are given up.
	if _, err := g.Request(context.Background(), sampleTo, sampleText); err != nil {
		return nil, err
	}
	return g, nil
}

// sampleTo and sampleText are the fields of the request the constructors
// build to check their templates.
const (
	sampleTo   = "+10000000000"
	sampleText = "text"
)

// redact replaces the secret, as it is and URL-escaped, in s: an API key
// in the URL's path or query would otherwise reach the log through an
// error of the HTTP client (which quotes the URL) or an answer that
// echoes the request.
func (g *HTTP) redact(s string) string {
	return redactSecret(g.cfg.Secret, s)
}

// redactErr returns err with the secret removed from the URL of a
// *url.Error (the error stays a *url.Error, so errors.Is still sees a
// timeout or a cancel).
func (g *HTTP) redactErr(err error) error {
	var ue *url.Error
	if g.cfg.Secret == "" || !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: g.redact(ue.URL), Err: ue.Err}
}

// Name returns "http".
func (g *HTTP) Name() string { return "http" }

// Request builds the request for one SMS.
func (g *HTTP) Request(ctx context.Context, to, text string) (*http.Request, error) {
	f := Fields{To: to, Text: text, Secret: g.cfg.Secret}
	u, err := run(g.url, f)
	if err != nil {
		return nil, err
	}
	body, err := run(g.body, f)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if g.cfg.Method != http.MethodGet {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, g.cfg.Method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("gateway: request: %w", g.redactErr(err))
	}
	for _, h := range g.headers {
		v, err := run(h.val, f)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("gateway: header %s: value has a line break", h.name)
		}
		req.Header.Set(h.name, v)
	}
	return req, nil
}

// Send posts one SMS; any answer but 2xx is a *StatusError.
func (g *HTTP) Send(ctx context.Context, to, text string) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := g.Request(ctx, to, text)
	if err != nil {
		return err
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway: post: %w", g.redactErr(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Status: g.redact(resp.Status),
			Msg: g.redact(strings.TrimSpace(string(msg))), Wait: retryAfter(resp.Header)}
	}
	return nil
}

// StatusError is an HTTP gateway's answer other than 2xx: the gateway
// did not take the SMS. Status and Msg (the start of the answer's body)
// have the secret replaced, since the error is logged.
type StatusError struct {
	Code   int    // the status code
	Status string // the status line's code and reason, "400 Bad Request"
	Msg    string
	// Wait is the answer's Retry-After (RFC 9110 §10.2.3), zero if it
	// has none or one that does not parse.
	Wait time.Duration
}

func (e *StatusError) Error() string { return "gateway: answer " + e.Status + ": " + e.Msg }

// Permanent reports whether trying again cannot help: a 4xx answer says
// the request itself is wrong (a number the gateway refuses, a text it
// will not take), and the same request gets the same answer. Some 4xx
// codes are about timing and stay temporary: 408 Request Timeout (RFC
// 9110 §15.5.9), 425 Too Early (RFC 8470 §5.2) and 429 Too Many Requests
// (RFC 6585 §4). So do those that say smsd's own setting is wrong, the
// same for every SMS — 401 and 407 (credentials), 403 (an account
// blocked or out of credit), 404 and 405 (the URL or method): giving up
// there would drop every SMS sent until the operator fixes the setting,
// where retrying delivers them once it is fixed (as the relay retries a
// refused AUTH). A 3xx (a redirect not followed) and a 5xx are temporary
// too.
func (e *StatusError) Permanent() bool {
	switch e.Code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests,
		http.StatusUnauthorized, http.StatusProxyAuthRequired, http.StatusForbidden,
		http.StatusNotFound, http.StatusMethodNotAllowed:
		return false
	}
	return e.Code/100 == 4
}

// RetryAfter returns how long the gateway asked smsd to wait before the
// next attempt (Retry-After, sent with a 429 or a 503); zero: no wish.
func (e *StatusError) RetryAfter() time.Duration { return e.Wait }

// maxRetryAfter bounds a Retry-After: a longer wish is no useful hint
// (smsd waits at most --retry-max anyway), and the bound keeps a huge
// number of seconds from overflowing a Duration.
const maxRetryAfter = 24 * time.Hour

// retryAfter parses the Retry-After of an answer with header h: delay
// seconds, or an HTTP-date. A date is measured against the answer's own
// Date, not this host's clock, so that a skew between the two does not
// shift the wait; without a Date the date is ignored. Anything that
// does not parse, or lies in the past, is zero.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter // only a number too big fails here
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return 0
	}
	return clamp(at.Sub(date), 0, maxRetryAfter)
}

// CommandConfig configures a command gateway.
type CommandConfig struct {
	// Argv is the program and its arguments, each a template over Fields
	// (the text also comes on stdin). Required.
	Argv    []string
	Secret  string
	Timeout time.Duration // one run; default 30 s
}

// Command runs a local program per SMS. Create it with NewCommand.
type Command struct {
	cfg  CommandConfig
	argv []*template.Template
}

// NewCommand checks cfg and returns the gateway.
func NewCommand(cfg CommandConfig) (*Command, error) {
	if len(cfg.Argv) == 0 {
		return nil, errors.New("gateway: command is empty")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	g := &Command{cfg: cfg}
	for i, a := range cfg.Argv {
		t, err := parse(fmt.Sprintf("argument %d", i), a)
		if err != nil {
			return nil, err
		}
		g.argv = append(g.argv, t)
	}
	// Run the templates once now: one that cannot run would otherwise
	// fail every SMS until the rows are given up.
	if _, err := g.Args(sampleTo, sampleText); err != nil {
		return nil, err
	}
	return g, nil
}

// Name returns "command".
func (g *Command) Name() string { return "command" }

// Args returns the argv for one SMS.
func (g *Command) Args(to, text string) ([]string, error) {
	f := Fields{To: to, Text: text, Secret: g.cfg.Secret}
	out := make([]string, 0, len(g.argv))
	for _, t := range g.argv {
		a, err := run(t, f)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Send runs the command with the text on stdin; exit status 0 is success.
// Every failure is temporary: there is no convention (no documented
// exit status) by which a command could say that a number is refused
// for good, and guessing one (sysexits' EX_NOUSER, say) would give up
// SMS of scripts that use the status for something else.
func (g *Command) Send(ctx context.Context, to, text string) error {
	argv, err := g.Args(to, text)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(text + "\n")
	// Only the start of the output is logged, so only that is kept: a
	// gateway that writes without end must not grow smsd's memory.
	out := &headWriter{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// On timeout the whole process group is killed (a shell's children
	// too), and Wait stops waiting for the output pipe after WaitDelay: a
	// child that outlives the command and holds the pipe open would
	// otherwise block Send (and the worker, and shutdown) until it exits.
	killGroup(cmd)
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		// The output is logged: a script that echoes its arguments or
		// traces itself (sh -x) on failure would put the credential
		// passed as {{.Secret}} into the log, as an HTTP answer echoing
		// the request would (HTTP.redact).
		return fmt.Errorf("gateway: %s: %w: %s", g.redact(argv[0]), err, g.redact(strings.TrimSpace(out.String())))
	}
	return nil
}

// redact replaces the secret in s, as it is and URL-escaped (a script
// may pass it on in a URL it prints).
func (g *Command) redact(s string) string {
	return redactSecret(g.cfg.Secret, s)
}

func redactSecret(sec, s string) string {
	if sec == "" {
		return s
	}
	for _, v := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
		s = strings.ReplaceAll(s, v, "[secret]")
	}
	return s
}

// maxOutput is how much of a failing command's output goes to the log.
const maxOutput = 300

// waitDelay bounds the wait for a killed command's output pipes.
const waitDelay = 2 * time.Second

// headWriter keeps the first max bytes written to it and discards the
// rest. Writes never fail, so the command never gets EPIPE. It is safe
// for concurrent use (os/exec copies stdout and stderr from two
// goroutines when they are not files).
type headWriter struct {
	max int
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *headWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Backoff returns the wait before retry number tries (1 = the first
// retry): min doubled per earlier failure, at most max.
func Backoff(tries int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < tries && d < max; i++ {
		d *= 2
	}
	return clamp(d, min, max)
}

func clamp(d, lo, hi time.Duration) time.Duration {
	if d > hi {
		return hi
	}
	if d < lo {
		return lo
	}
	return d
}

// Limiter allows at most N sends per number in any Window (a sliding
// window). It is safe for concurrent use. The zero N means no limit.
type Limiter struct {
	N int
	// Window is the sliding window; zero means DefaultWindow. (A zero
	// window used to let every send through: `--rate-window 0`, which
	// the docs call the default, turned the limit off.)
	Window time.Duration

	mu   sync.Mutex
	sent map[string][]time.Time // per number, oldest first, at most N
}

// DefaultWindow is the Limiter's window when Window is zero.
const DefaultWindow = time.Hour

// Reserve records a send to number at now if the limit allows it and
// returns true; otherwise it returns false and the earliest time a send
// will be allowed.
func (l *Limiter) Reserve(number string, now time.Time) (bool, time.Time) {
	if l.N <= 0 {
		return true, now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string][]time.Time{}
	}
	window := l.Window
	if window <= 0 {
		window = DefaultWindow
	}
	ts := l.sent[number]
	for len(ts) > 0 && !ts[0].Add(window).After(now) {
		ts = ts[1:]
	}
	if len(ts) >= l.N {
		l.sent[number] = ts
		return false, ts[0].Add(window)
	}
	l.sent[number] = append(ts, now)
	return true, now
}

// Release takes back the newest reservation of number (the send failed).
func (l *Limiter) Release(number string) {
	if l.N <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ts := l.sent[number]; len(ts) > 0 {
		l.sent[number] = ts[:len(ts)-1]
	}
}
