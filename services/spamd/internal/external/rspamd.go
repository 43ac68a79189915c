package external

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// RspamdConfig configures an Rspamd client.
type RspamdConfig struct {
	// URL is the normal worker's base URL, e.g. "http://127.0.0.1:11333".
	// Required.
	URL string
	// Password is sent as the Password header when set (needed when the
	// URL is the controller worker).
	Password string
	// Client sends the requests. Default: a client with no redirects.
	Client *http.Client
	Limits
}

// Validate reports every problem of c at once.
func (c RspamdConfig) Validate() error {
	errs := c.Limits.validate()
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("external: rspamd url: %w", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fmt.Errorf("external: rspamd url %q is not http(s)://host[:port]", c.URL))
	}
	return errors.Join(errs...)
}

// Rspamd asks an rspamd normal worker over HTTP. It is safe for concurrent
// use.
type Rspamd struct {
	cfg    RspamdConfig
	client *http.Client
	url    string
}

// NewRspamd returns a client for cfg. Call cfg.Validate first.
func NewRspamd(cfg RspamdConfig) *Rspamd {
	cfg.Limits = cfg.Limits.withDefaults()
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			// A redirect from a scanner is a misconfiguration; following it
			// would send the mail somewhere the operator did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Rspamd{cfg: cfg, client: client, url: strings.TrimSuffix(cfg.URL, "/") + "/checkv2"}
}

// Check posts raw with the envelope to /checkv2 and returns the verdict.
func (r *Rspamd) Check(ctx context.Context, env signal.Envelope, raw []byte) (Result, error) {
	if len(raw) > r.cfg.MaxBytes {
		return Result{}, fmt.Errorf("rspamd check of %d bytes: %w", len(raw), ErrTooLarge)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(raw))
	if err != nil {
		return Result{}, fmt.Errorf("rspamd request: %w", err)
	}
	// rspamd's request headers (protocol.html): the envelope it cannot
	// read from the mail.
	setIf(req.Header, "IP", env.ClientIP)
	setIf(req.Header, "Helo", env.Helo)
	setIf(req.Header, "From", env.From)
	setIf(req.Header, "Rcpt", env.Rcpt)
	setIf(req.Header, "Password", r.cfg.Password)
	resp, err := r.client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("rspamd post %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(r.cfg.MaxResponseBytes)+1))
	if err != nil {
		return Result{}, fmt.Errorf("rspamd read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("rspamd answered %s", resp.Status)
	}
	if len(body) > r.cfg.MaxResponseBytes {
		return Result{}, malformed("rspamd answer longer than %d bytes", r.cfg.MaxResponseBytes)
	}
	res, err := parseRspamdResponse(body)
	if err != nil {
		return Result{}, fmt.Errorf("rspamd answer: %w", err)
	}
	return res, nil
}

func setIf(h http.Header, key, value string) {
	// A header value with a line break would be refused by net/http; an
	// envelope field never legitimately has one.
	if value != "" && !strings.ContainsAny(value, "\r\n") {
		h.Set(key, value)
	}
}

// rspamdAnswer is the part of the /checkv2 answer we read:
//
//	{"is_skipped":false,"score":7.4,"required_score":15,"action":"add header",
//	 "symbols":{"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1}, ...}}
//
// Pointers tell a missing field from a zero one.
type rspamdAnswer struct {
	IsSkipped     bool                       `json:"is_skipped"`
	Score         *float64                   `json:"score"`
	RequiredScore *float64                   `json:"required_score"`
	Action        *string                    `json:"action"`
	Symbols       map[string]json.RawMessage `json:"symbols"`
	Error         string                     `json:"error"`
}

// rspamdSpamActions are the actions by which rspamd calls a mail spam.
// "soft reject" and "greylist" are rate limits and greylisting, not a
// judgement of content.
var rspamdSpamActions = []string{"reject", "add header", "rewrite subject"}

var rspamdActions = []string{"no action", "greylist", "soft reject", "reject", "add header", "rewrite subject"}

// parseRspamdResponse reads a /checkv2 JSON answer. score, required_score
// and a known action are required; anything else is ErrMalformed.
func parseRspamdResponse(body []byte) (Result, error) {
	var a rspamdAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return Result{}, malformed("json: %v", err)
	}
	if a.Error != "" {
		return Result{}, fmt.Errorf("rspamd error: %q", a.Error)
	}
	if a.IsSkipped {
		return Result{}, ErrSkipped
	}
	if a.Score == nil || a.RequiredScore == nil || a.Action == nil {
		return Result{}, malformed("score, required_score or action missing")
	}
	if bad(*a.Score) || bad(*a.RequiredScore) {
		return Result{}, malformed("score %v / %v", *a.Score, *a.RequiredScore)
	}
	if !slices.Contains(rspamdActions, *a.Action) {
		return Result{}, malformed("action %q", *a.Action)
	}
	res := Result{
		Score:     *a.Score,
		Threshold: *a.RequiredScore,
		Spam:      slices.Contains(rspamdSpamActions, *a.Action),
		Engine:    "rspamd",
	}
	for name := range a.Symbols {
		res.Rules = append(res.Rules, name)
	}
	slices.Sort(res.Rules)
	return res, nil
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }
