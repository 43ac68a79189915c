package test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/dbd/proctest"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Helpers that read and decide mails in dbd through dbctl and the wire
// client.

// mailLine is one line of `dbctl mails`.
type mailLine struct {
	Key    string
	Fields map[string]string // from, to, subject, verdict, backed-up, ack
}

func (m mailLine) String() string {
	return m.Key + " " + m.Fields["to"] + " subject=" + m.Fields["subject"] + " verdict=" + m.Fields["verdict"] +
		" backed-up=" + m.Fields["backed-up"] + " ack=" + m.Fields["ack"]
}

// parseMailLine parses "KEY name=value name=\"quoted value\" ...".
func parseMailLine(line string) (mailLine, bool) {
	key, rest, ok := strings.Cut(line, " ")
	if !ok || len(key) != 64 {
		return mailLine{}, false
	}
	m := mailLine{Key: key, Fields: map[string]string{}}
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return mailLine{}, false
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return mailLine{}, false
			}
			val, _ = strconv.Unquote(q)
			rest = after[len(q):]
		} else {
			val, rest, _ = strings.Cut(after, " ")
		}
		m.Fields[name] = val
	}
	return m, true
}

// mails runs `dbctl mails --last n`.
func (s *site) mails(n int) []mailLine {
	s.T().Helper()
	var out []mailLine
	for _, line := range strings.Split(strings.TrimSpace(s.Dbctl(nil, "mails", "--last", strconv.Itoa(n))), "\n") {
		if line == "" {
			continue
		}
		m, ok := parseMailLine(line)
		if !ok {
			s.T().Fatalf("dbctl mails printed a line that is not KEY name=value...: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// waitMail polls `dbctl mails` until a line for mailbox `to` whose subject
// contains token satisfies ok, and returns it.
func (s *site) waitMail(to, token string, limit time.Duration, ok func(mailLine) bool) mailLine {
	s.T().Helper()
	deadline := time.Now().Add(limit)
	var last []mailLine
	for {
		last = s.mails(50)
		for _, m := range last {
			if m.Fields["to"] == to && strings.Contains(m.Fields["subject"], token) && (ok == nil || ok(m)) {
				return m
			}
		}
		if time.Now().After(deadline) {
			s.T().Fatalf("no mail to %s with subject %q in the wanted state after %s; dbctl mails: %v", to, token, limit, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addMailbox runs `dbctl mailbox add`.
func (s *site) addMailbox(addrs ...string) {
	s.T().Helper()
	for _, a := range addrs {
		s.Dbctl(nil, "mailbox", "add", a)
	}
}

// autoverdict runs `dbctl autoverdict accept|reject` until the test ends:
// every mail gets the filter verdict as soon as smtpd stores it.
func (s *site) autoverdict(v string) *exec.Cmd {
	s.T().Helper()
	cmd := exec.Command(filepath.Join(binDir, "dbctl"), "--db", s.Addr, "--db-pub", s.Key("dbd.pub"),
		"--key", s.Key("admin"), "autoverdict", v)
	out := &proctest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	dieWithTest(cmd, syscall.SIGKILL)
	if err := cmd.Start(); err != nil {
		s.T().Fatal(err)
	}
	s.T().Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if s.T().Failed() {
			s.T().Logf("dbctl autoverdict output (tail):\n%s", proctest.Tail(out.String(), 10))
		}
	})
	return cmd
}

// receiveKey is the key of the receive row of the mail raw (as smtpd
// received it) in mailbox addr.
func receiveKey(raw []byte, addr string) model.Key {
	mk := model.NewMailRows(raw).MailKey
	return model.KeyOf(model.Receive, model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(addr))))
}

// receiveRow reads a receive row; nil if it does not exist.
func (s *site) receiveRow(ctx context.Context, k model.Key) (*model.State, error) {
	row, err := s.Client().FindKey(ctx, model.Receive, k)
	if errors.Is(err, client.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &row.State, nil
}

// storedMail reads back what smtpd stored for the acknowledged receive
// row k: header, the received row its acknowledgement links to, and body,
// joined. The result starts with smtpd's own Received field.
func (s *site) storedMail(ctx context.Context, k model.Key) ([]byte, error) {
	c := s.Client()
	rcv, err := c.FindKey(ctx, model.Receive, k)
	if err != nil {
		return nil, err
	}
	mk, _, err := model.ParseReceiveContent(rcv.Content)
	if err != nil {
		return nil, err
	}
	rk, ok := model.AcknowledgedReceived(rcv.State)
	if !ok {
		return nil, errors.New("the receive row links no received row (not acknowledged?)")
	}
	mail, err := c.FindKey(ctx, model.Mail, mk)
	if err != nil {
		return nil, err
	}
	hk, bk, err := model.ParseMailContent(mail.Content)
	if err != nil {
		return nil, err
	}
	h, err := c.FindKey(ctx, model.Header, hk)
	if err != nil {
		return nil, err
	}
	b, err := c.FindKey(ctx, model.Body, bk)
	if err != nil {
		return nil, err
	}
	r, err := c.FindKey(ctx, model.Received, rk)
	if err != nil {
		return nil, err
	}
	return model.Join(model.Parts{Header: h.Content, Received: r.Content, Body: b.Content})
}

// stripOurFields splits a stored mail into the fields smtpd adds at
// delivery — Return-Path, then its Received field — and the rest, which is
// what the client sent. Without a leading Return-Path, returnPath is nil
// and rest the whole mail, so a comparison with what was sent fails.
func stripOurFields(raw []byte) (returnPath, received, rest []byte) {
	rp, after := stripFirstField(raw)
	if !model.IsReturnPath(rp) {
		return nil, rp, raw
	}
	received, rest = stripFirstField(after)
	return rp, received, rest
}

// stripFirstField removes the first header field (with its continuation
// lines) of a raw mail and returns it and the rest.
func stripFirstField(raw []byte) (field, rest []byte) {
	i := 0
	for {
		nl := bytes.IndexByte(raw[i:], '\n')
		if nl < 0 {
			return raw, nil
		}
		i += nl + 1
		if i >= len(raw) || (raw[i] != ' ' && raw[i] != '\t') {
			return raw[:i], raw[i:]
		}
	}
}

// receiveKeyOf is the receive row key (hex) of mail mailKey (hex) in
// mailbox addr.
func receiveKeyOf(t testing.TB, mailKey, addr string) string {
	t.Helper()
	mk, err := model.ParseKey(mailKey)
	if err != nil {
		t.Fatal(err)
	}
	return model.KeyOf(model.Receive, model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(addr)))).String()
}
