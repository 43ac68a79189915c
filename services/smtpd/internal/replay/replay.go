// Package replay plays a captured SMTP session (package guard's transcript,
// stored by smtpd as a capture row) against a live smtpd and compares the
// reply codes, so real recorded traffic becomes a regression test.
package replay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
)

// Meta is the line smtpd writes before the transcript in a capture row.
const metaPrefix = "twinmx-session "

// Split separates a capture row's content into its meta line (without the
// prefix) and the guard records.
func Split(content []byte) (meta string, recs []guard.Record, err error) {
	if rest, ok := bytes.CutPrefix(content, []byte(metaPrefix)); ok {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return "", nil, fmt.Errorf("capture: meta line without end")
		}
		meta, content = string(rest[:nl]), rest[nl+1:]
	}
	recs, err = guard.ParseCapture(content)
	if err != nil {
		return meta, nil, fmt.Errorf("capture: %w", err)
	}
	return meta, recs, nil
}

// MetaLine is the meta line for a session (with its line end).
func MetaLine(session, client string, start time.Time) string {
	return fmt.Sprintf("%ssession=%s client=%s start=%s\n", metaPrefix, session, client, start.UTC().Format(time.RFC3339Nano))
}

// DataRef is the reference smtpd puts in a capture in place of a stored
// message's DATA bytes (guard.DirMail).
func DataRef(mail, received model.Key) string {
	return "mail=" + mail.String() + " received=" + received.String()
}

// ParseDataRef reverses DataRef.
func ParseDataRef(ref []byte) (mail, received model.Key, err error) {
	f := strings.Fields(string(ref))
	if len(f) != 2 || !strings.HasPrefix(f[0], "mail=") || !strings.HasPrefix(f[1], "received=") {
		return mail, received, fmt.Errorf("capture: bad data reference %q", ref)
	}
	if mail, err = model.ParseKey(f[0][len("mail="):]); err != nil {
		return mail, received, fmt.Errorf("capture: data reference: %w", err)
	}
	if received, err = model.ParseKey(f[1][len("received="):]); err != nil {
		return mail, received, fmt.Errorf("capture: data reference: %w", err)
	}
	return mail, received, nil
}

// Stuff returns a raw message as DATA bytes: dot-stuffed (RFC 5321
// §4.5.2), ending in CRLF, then the end marker.
func Stuff(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+len(raw)/64+5)
	bol := true
	for i, c := range raw {
		if bol && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		bol = c == '\n' && i > 0 && raw[i-1] == '\r'
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

// Result is what a replay saw.
type Result struct {
	Want, Got []int // final reply codes, in order
	// Incomplete is set when the capture lost bytes (it was full), so the
	// session cannot be played faithfully; nothing is sent then.
	Incomplete bool
}

// Match reports whether the live server answered with the same codes.
func (r Result) Match() bool {
	if r.Incomplete || len(r.Want) != len(r.Got) {
		return false
	}
	for i := range r.Want {
		if r.Want[i] != r.Got[i] {
			return false
		}
	}
	return true
}

// Options are how Play plays.
type Options struct {
	// Wait bounds each read and write.
	Wait time.Duration
	// Data returns the DATA bytes of a stored message (guard.DirMail) for
	// its reference; with Data nil, such a capture is incomplete.
	Data func(ref []byte) ([]byte, error)
	// RecordedServer lets a session be played against a server that
	// greets with the name the recorded one did (see ErrRecordedServer).
	RecordedServer bool
}

// ErrRecordedServer is Play's refusal to go on past the greeting when the
// live server greets with the host name the recorded server greeted with:
// most likely the MX the session was recorded at, where a replay is real
// mail (a mail once told 451 and never sent again would be judged anew and
// delivered). A test smtpd has a name of its own; Options.RecordedServer
// plays anyway.
var ErrRecordedServer = errors.New("the target greets with the recorded server's name: it looks like the MX the session was recorded at")

// Play sends the client's bytes of recs over conn in the recorded order
// and, wherever the server spoke in the recording, reads as many replies
// from the live server. Each read and write waits at most o.Wait, and
// none outlives ctx. A STARTTLS point in the recording starts TLS on conn
// (the certificate is not checked: a replay target is a test server).
func Play(ctx context.Context, conn net.Conn, recs []guard.Record, o Options) (Result, error) {
	wait, data := o.Wait, o.Data
	var res Result
	for _, r := range recs {
		if r.Elided > 0 || (r.Dir == guard.DirMail && data == nil) {
			res.Incomplete = true
			return res, nil
		}
	}
	// A cancelled ctx (the operator gave up) ends a read or write that
	// would otherwise block for up to wait: the deadline moves to the past.
	// Each deadline below is set before ctx is checked, so a cancellation
	// after the check always lands after it.
	raw := conn
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	deadline := func(set func(time.Time) error) error {
		set(time.Now().Add(wait))
		return ctx.Err()
	}
	br := bufio.NewReader(conn)
	var pending []byte // expected server bytes not yet matched
	flush := func() error {
		want := finalCodes(pending)
		recorded := greetingHost(pending)
		pending = pending[:0]
		for _, w := range want {
			res.Want = append(res.Want, w)
			if err := deadline(conn.SetReadDeadline); err != nil {
				return err
			}
			got, first, err := readReply(br)
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				return fmt.Errorf("reply %d: %w", len(res.Got)+1, err)
			}
			if len(res.Got) == 0 && !o.RecordedServer && recorded != "" && strings.EqualFold(recorded, greetingHost(first)) {
				return fmt.Errorf("%w (%s)", ErrRecordedServer, recorded)
			}
			res.Got = append(res.Got, got)
		}
		return nil
	}
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		switch r.Dir {
		case guard.DirServer:
			pending = append(pending, r.Data...)
		case guard.DirClient, guard.DirMail:
			if err := flush(); err != nil {
				return res, err
			}
			out := r.Data
			if r.Dir == guard.DirMail {
				b, err := data(r.Data)
				if err != nil {
					return res, fmt.Errorf("stored message %s: %w", r.Data, err)
				}
				out = b
			}
			if err := deadline(conn.SetWriteDeadline); err != nil {
				return res, err
			}
			if _, err := conn.Write(out); err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				return res, fmt.Errorf("send: %w", err)
			}
		case guard.DirTLS:
			if err := flush(); err != nil {
				return res, err
			}
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test target
			hctx, cancel := context.WithTimeout(ctx, wait)
			err := tc.HandshakeContext(hctx)
			cancel()
			if err != nil {
				return res, fmt.Errorf("starttls: %w", err)
			}
			conn, br = tc, bufio.NewReader(tc)
		}
	}
	err := flush()
	return res, err
}

// finalCodes returns the codes of the final lines ("NNN " or a bare "NNN")
// of the complete replies in b.
func finalCodes(b []byte) []int {
	var codes []int
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) < 3 || line[len(line)-1] != '\n' {
			continue
		}
		code, ok := replyCode(line)
		if !ok {
			continue
		}
		if line[3] != '-' {
			codes = append(codes, code)
		}
	}
	return codes
}

// readReply reads one whole (possibly multi-line) reply and returns its
// code and its first line.
func readReply(br *bufio.Reader) (int, []byte, error) {
	var first []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil, fmt.Errorf("reply line too long")
			}
			return 0, nil, err
		}
		if len(line) < 4 {
			return 0, nil, fmt.Errorf("bad reply line %q", line)
		}
		code, ok := replyCode(line)
		if !ok {
			return 0, nil, fmt.Errorf("bad reply line %q", line)
		}
		if first == nil {
			first = bytes.Clone(line)
		}
		if line[3] != '-' {
			return code, first, nil
		}
	}
}

// greetingHost returns the host name of a 220 greeting at the start of b
// ("220 mx.example ESMTP ..."; RFC 5321 §4.2 puts the server's name first),
// or "" if b does not start with one.
func greetingHost(b []byte) string {
	if len(b) < 5 || !bytes.HasPrefix(b, []byte("220")) || (b[3] != ' ' && b[3] != '-') {
		return ""
	}
	line, _, _ := bytes.Cut(b[4:], []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// replyCode returns the code at the start of a reply line: three digits,
// the first 1 to 5 (RFC 5321 §4.2). strconv.Atoi alone took "-50" and
// "+25" for codes, so a garbled line was compared as a reply.
func replyCode(line []byte) (int, bool) {
	if len(line) < 4 || line[0] < '1' || line[0] > '5' {
		return 0, false
	}
	for _, c := range line[1:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	return int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0'), true
}

// Finder reads rows by key (*client.Client with an admin key implements it).
type Finder interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
}

// FromDB returns the data function for Play that rebuilds a stored
// message's DATA bytes from dbd: the header, the received row of that
// delivery and the body, re-joined (pkg/model.Join), without smtpd's own
// trace fields (the client did not send them), dot-stuffed.
func FromDB(ctx context.Context, db Finder) func(ref []byte) ([]byte, error) {
	return func(ref []byte) ([]byte, error) {
		mk, rk, err := ParseDataRef(ref)
		if err != nil {
			return nil, err
		}
		m, err := db.FindKey(ctx, model.Mail, mk)
		if err != nil {
			return nil, fmt.Errorf("read mail %s: %w", mk, err)
		}
		hk, bk, err := model.ParseMailContent(m.Content)
		if err != nil {
			return nil, err
		}
		var parts [3][]byte
		for i, want := range []struct {
			t model.Table
			k model.Key
		}{{model.Header, hk}, {model.Received, rk}, {model.Body, bk}} {
			row, err := db.FindKey(ctx, want.t, want.k)
			if err != nil {
				return nil, fmt.Errorf("read %s %s: %w", want.t, want.k, err)
			}
			parts[i] = row.Content
		}
		raw, err := model.Join(model.Parts{Header: parts[0], Received: parts[1], Body: parts[2]})
		if err != nil {
			return nil, err
		}
		fs, err := model.ReceivedFields(parts[1])
		if err != nil || len(fs) == 0 || fs[0].Index != 0 {
			return nil, fmt.Errorf("received row %s does not start with smtpd's trace field", rk)
		}
		ours := len(fs[0].Raw)
		if model.IsReturnPath(fs[0].Raw) {
			// Since 2026-12-03 smtpd adds a Return-Path above its Received.
			if len(fs) < 2 || fs[1].Index != 1 {
				return nil, fmt.Errorf("received row %s has no trace field below its Return-Path", rk)
			}
			ours += len(fs[1].Raw)
		}
		return Stuff(raw[ours:]), nil
	}
}
