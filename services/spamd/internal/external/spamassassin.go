package external

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// SpamAssassinConfig configures a SpamAssassin client.
type SpamAssassinConfig struct {
	// Addr is spamd's TCP address, "host:port" (spamd listens on 783 by
	// default). Required.
	Addr string
	// User is sent as the spamc User header so spamd applies that user's
	// preferences. Empty: spamd's default user.
	User string
	Limits
}

// Validate reports every problem of c at once.
func (c SpamAssassinConfig) Validate() error {
	errs := c.Limits.validate()
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("external: spamassassin address %q: %w", c.Addr, err))
	}
	if strings.ContainsAny(c.User, "\r\n") {
		errs = append(errs, errors.New("external: spamassassin user contains a line break"))
	}
	return errors.Join(errs...)
}

// SpamAssassin asks a SpamAssassin spamd with the SYMBOLS command. It is
// safe for concurrent use.
type SpamAssassin struct {
	cfg SpamAssassinConfig
}

// NewSpamAssassin returns a client for cfg. Call cfg.Validate first.
func NewSpamAssassin(cfg SpamAssassinConfig) *SpamAssassin {
	cfg.Limits = cfg.Limits.withDefaults()
	return &SpamAssassin{cfg: cfg}
}

// Check sends raw to spamd and returns its verdict. The envelope is not
// part of the spamc protocol; spamd reads what it needs from the headers.
func (s *SpamAssassin) Check(ctx context.Context, _ signal.Envelope, raw []byte) (Result, error) {
	if len(raw) > s.cfg.MaxBytes {
		return Result{}, fmt.Errorf("spamassassin check of %d bytes: %w", len(raw), ErrTooLarge)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return Result{}, fmt.Errorf("spamassassin dial %s: %w", s.cfg.Addr, err)
	}
	defer conn.Close()
	// The deadline covers the timeout; the AfterFunc covers a caller who
	// cancels before it.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	if _, err := conn.Write(spamcRequest("SYMBOLS", s.cfg.User, raw)); err != nil {
		return Result{}, fmt.Errorf("spamassassin send: %w", ctxFirst(ctx, err))
	}
	// spamc half-closes after the message; spamd does not need it (it
	// reads Content-length bytes) but it is the reference behaviour.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	resp, err := io.ReadAll(io.LimitReader(conn, int64(s.cfg.MaxResponseBytes)+1))
	if err != nil {
		return Result{}, fmt.Errorf("spamassassin read answer: %w", ctxFirst(ctx, err))
	}
	if len(resp) > s.cfg.MaxResponseBytes {
		return Result{}, malformed("spamassassin answer longer than %d bytes", s.cfg.MaxResponseBytes)
	}
	res, err := parseSpamdResponse(resp)
	if err != nil {
		return Result{}, fmt.Errorf("spamassassin answer: %w", err)
	}
	return res, nil
}

// ctxFirst returns ctx's error when ctx ended (the deadline or the
// AfterFunc's close caused err, whichever won the race: callers test for a
// timeout), else err.
func ctxFirst(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}

// spamcRequest builds a spamc protocol request (SPAMC/1.5):
//
//	SYMBOLS SPAMC/1.5\r\n
//	Content-length: 1234\r\n
//	User: alice\r\n
//	\r\n
//	<message>
func spamcRequest(cmd, user string, raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + 80)
	fmt.Fprintf(&b, "%s SPAMC/1.5\r\nContent-length: %d\r\n", cmd, len(raw))
	if user != "" {
		fmt.Fprintf(&b, "User: %s\r\n", user)
	}
	b.WriteString("\r\n")
	b.Write(raw)
	return b.Bytes()
}

// SpamdError is a well-formed error reply of spamd: a non-zero sysexits
// code ("SPAMD/1.0 76 Bad header line").
type SpamdError struct {
	Code int
	Msg  string
}

func (e *SpamdError) Error() string {
	return fmt.Sprintf("spamd error %d: %s", e.Code, e.Msg)
}

// parseSpamdResponse reads a whole spamd reply to CHECK or SYMBOLS:
//
//	SPAMD/1.1 0 EX_OK\r\n
//	Content-length: 27\r\n
//	Spam: True ; 7.3 / 5.0\r\n
//	\r\n
//	BAYES_99,URIBL_BLACK,GTUBE
//
// Bare LF line ends are accepted. Any deviation is ErrMalformed; a
// non-zero code is a *SpamdError.
func parseSpamdResponse(resp []byte) (Result, error) {
	br := bufio.NewReader(bytes.NewReader(resp))
	status, err := readLine(br)
	if err != nil {
		return Result{}, malformed("no status line")
	}
	code, msg, err := parseSpamdStatus(status)
	if err != nil {
		return Result{}, err
	}
	if code != 0 {
		return Result{}, &SpamdError{Code: code, Msg: msg}
	}
	var (
		res       Result
		haveSpam  bool
		bodyLen   = -1
		endOfHead bool
	)
	for !endOfHead {
		line, err := readLine(br)
		if err != nil {
			return Result{}, malformed("header not ended")
		}
		if line == "" {
			endOfHead = true
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return Result{}, malformed("header line %q", line)
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "spam":
			if haveSpam {
				return Result{}, malformed("two Spam headers")
			}
			if res, err = parseSpamHeader(value); err != nil {
				return Result{}, err
			}
			haveSpam = true
		case "content-length":
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || n < 0 {
				return Result{}, malformed("content-length %q", value)
			}
			bodyLen = n
		}
	}
	if !haveSpam {
		return Result{}, malformed("no Spam header")
	}
	body, _ := io.ReadAll(br)
	if bodyLen >= 0 && len(body) != bodyLen {
		return Result{}, malformed("body of %d bytes, content-length %d", len(body), bodyLen)
	}
	// SYMBOLS: the rules that fired, comma-separated. CHECK: empty.
	for _, r := range strings.Split(strings.TrimSpace(string(body)), ",") {
		if r = strings.TrimSpace(r); r != "" {
			res.Rules = append(res.Rules, r)
		}
	}
	res.Engine = "spamassassin"
	return res, nil
}

// readLine reads one line and strips its CRLF or LF; a final line without
// one is an error (the reply was cut).
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

// parseSpamdStatus parses "SPAMD/1.1 0 EX_OK".
func parseSpamdStatus(line string) (int, string, error) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "SPAMD/1.") {
		return 0, "", malformed("status line %q", line)
	}
	codeStr, msg, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || code < 0 {
		return 0, "", malformed("status code in %q", line)
	}
	return code, msg, nil
}

// parseSpamHeader parses the value of "Spam: True ; 7.3 / 5.0".
func parseSpamHeader(v string) (Result, error) {
	verdict, scores, ok := strings.Cut(v, ";")
	if !ok {
		return Result{}, malformed("spam header %q", v)
	}
	var res Result
	switch strings.ToLower(strings.TrimSpace(verdict)) {
	case "true", "yes":
		res.Spam = true
	case "false", "no":
	default:
		return Result{}, malformed("spam verdict %q", verdict)
	}
	score, threshold, ok := strings.Cut(scores, "/")
	if !ok {
		return Result{}, malformed("spam scores %q", scores)
	}
	var err error
	if res.Score, err = parseScore(score); err != nil {
		return Result{}, err
	}
	if res.Threshold, err = parseScore(threshold); err != nil {
		return Result{}, err
	}
	return res, nil
}

func parseScore(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, malformed("score %q", s)
	}
	return f, nil
}
