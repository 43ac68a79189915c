package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/pop3d/internal/metrics"
	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// userCmd answers USER (RFC 1939 §7). Nothing is looked up: every name
// gets the same answer.
func (c *conn) userCmd(name string) error {
	if !c.plaintextOK() {
		c.s.m.Logins.WithLabelValues(metrics.LoginRefused).Inc()
		return errNeedTLS
	}
	c.user = name
	return c.ok("send PASS")
}

// pass answers PASS.
func (c *conn) pass(password string) error {
	if !c.plaintextOK() {
		c.s.m.Logins.WithLabelValues(metrics.LoginRefused).Inc()
		return errNeedTLS
	}
	if c.user == "" {
		return errNeedUser
	}
	user := c.user
	c.user = ""
	return c.login(user, password)
}

// auth answers AUTH (RFC 5034): a bare AUTH lists the mechanisms (as many
// clients expect); PLAIN (RFC 4616) with or without an initial response.
func (c *conn) auth(cmd pop3.Command) error {
	if cmd.Arg == "" {
		c.ok("SASL mechanisms follow")
		if c.plaintextOK() {
			c.writeLine("PLAIN")
		}
		if !c.writeLine(".") {
			return errIO
		}
		return nil
	}
	if cmd.Arg != "PLAIN" {
		return errMechanism
	}
	if !c.plaintextOK() {
		c.s.m.Logins.WithLabelValues(metrics.LoginRefused).Inc()
		return errNeedTLS
	}
	resp := cmd.Initial
	if !cmd.HasInitial {
		// RFC 5034 §4: an empty challenge, then the client's response line.
		if !c.writeLine("+ ") {
			return errIO
		}
		line, err := c.readCommand(c.s.cfg.IdleTimeout)
		if err != nil {
			// The same replies as a wait for a command (too long, idle,
			// shutdown); only a broken connection gets none.
			if reply := c.readFailure(err); reply != nil {
				return reply
			}
			return fmt.Errorf("%w: read SASL response: %v", errIO, err)
		}
		resp = string(line)
		if resp == "*" {
			return errCancelled
		}
	}
	user, password, err := decodePlain(resp)
	if err != nil {
		return errBadResponse
	}
	return c.login(user, password)
}

// decodePlain decodes a base64 PLAIN response (RFC 4616 §2:
// [authzid] NUL authcid NUL passwd). "=" and "" are the empty response
// (RFC 5034 §4), which PLAIN cannot use. An authorization identity other
// than the login itself is not supported.
func decodePlain(resp string) (user, password string, err error) {
	if resp == "=" {
		resp = ""
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return "", "", err
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", errors.New("want authzid NUL authcid NUL passwd")
	}
	if len(parts[0]) > 0 && !bytes.EqualFold(parts[0], parts[1]) {
		return "", "", errors.New("authorization identity differs from the login")
	}
	return string(parts[1]), string(parts[2]), nil
}

// login checks a password and, on success, opens the maildrop and enters
// TRANSACTION. Every authentication failure gets the same reply, no
// sooner than AuthFailDelay after it began; an IP over the failure limit
// is refused without checking.
func (c *conn) login(user, password string) error {
	start := c.s.cfg.Now()
	if c.s.limit.Blocked(c.ip, start) {
		c.s.m.Logins.WithLabelValues(metrics.LoginRefused).Inc()
		c.log.Warn("login refused: too many failures from this address")
		return errAuthBlocked
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	// The store bounds the password checks running at once
	// (mailbox.DefaultMaxChecks, argon2id's 64 MiB each).
	acct, err := c.s.cfg.Store.Login(ctx, user, password)
	if errors.Is(err, mailbox.ErrAuth) {
		c.s.limit.Fail(c.ip, start)
		c.s.m.Logins.WithLabelValues(metrics.LoginFailed).Inc()
		c.log.Warn("login failed", "login", user)
		if d := c.s.cfg.AuthFailDelay - c.s.cfg.Now().Sub(start); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-c.s.ctx.Done():
			}
		}
		return errAuthFailed
	}
	if err != nil {
		c.s.m.Logins.WithLabelValues(metrics.LoginError).Inc()
		return fmt.Errorf("login %s: %w", user, err)
	}
	drop, err := openMaildrop(ctx, c.s.cfg.Store, acct)
	if err != nil {
		c.s.m.Logins.WithLabelValues(metrics.LoginError).Inc()
		return fmt.Errorf("open maildrop of %s: %w", acct.Login, err)
	}
	c.s.m.Logins.WithLabelValues(metrics.LoginOK).Inc()
	if acct.Cached {
		c.s.m.LoginsCached.Inc()
	}
	c.acct, c.drop, c.state = acct, drop, stateTransaction
	c.log = c.log.With("login", acct.Login)
	c.log.Info("login", "tls", c.tls, "messages", len(drop.msgs), "mailboxes", len(acct.Mailboxes))
	return c.ok(fmt.Sprintf("maildrop ready, %d messages", len(drop.msgs)))
}
