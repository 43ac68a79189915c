// Package confmail is configuration by e-mail (issue 7, docs/spamd.md):
// spamd recognises mail to the config address, checks that it comes from
// an authenticated admin, applies its commands (package
// pkg/wire/config) as one atomic batch with a second, admin-role dbd key,
// and mails a confirmation listing every line's result through the local
// smtpd.
//
// # Authentication
//
// The RFC5322.From address must be a listed admin (config row
// twinmx-config-admin/1), AND either a DKIM signature that verifies with a
// d= aligned (relaxed) with the From domain, or a line "secret: S" whose S
// matches the admin's argon2id secret hash. Anything else is refused at
// SMTP time (550) and changes nothing.
//
// # Replays and two instances
//
// The batch records the mail's key (text row twinmx-config-mail/1) and,
// for a mail authenticated by DKIM, a key for each aligned signature (its
// decoded b= value): a copy of a signed mail with a header field added or
// whitespace changed has another mail key but the same signature. A mail
// whose key or a signature's key is recorded changes nothing and gets no
// confirmation.
// Changes are made at the attempt's time (the throw-in's), so two spamd
// instances judging the same attempt before either sees the record write
// the same values; each then sends a confirmation (the admin may get two).
//
// # Confirmations
//
// Each carries X-Twinmx-Config: v1 HMAC over its Message-ID, recipient,
// Subject and body, with a secret kept in the config row
// twinmx-config-mac/1; the judge accepts a mail whose MAC verifies before
// any other signal, so greylisting or the classifier never hold a
// confirmation back.
package confmail

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/model/passwd"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
	"github.com/twinmx/twinmx/pkg/wire/config"
	"github.com/twinmx/twinmx/services/spamd/internal/digest"
	"github.com/twinmx/twinmx/services/spamd/internal/judge"
	"github.com/twinmx/twinmx/services/spamd/internal/msgauth"
	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// DB is what configuration by e-mail needs of a dbd client;
// *client.Client implements it.
type DB interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
	ScanKeys(ctx context.Context, t model.Table, limit int) ([]model.Key, error)
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

var _ DB = (*client.Client)(nil)

// Applier sends a plan's batch; it is the admin-role client (--config-key).
type Applier interface {
	Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error)
}

// Sender hands one mail to an SMTP server; digest.SMTPSender implements it.
type Sender interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// DefaultLocalPart is the local part of the default config address.
const DefaultLocalPart = "config"

// ErrOff is the refusal reason when no admin key is configured.
const ErrOff = "configuration by e-mail is off"

// Config configures a Mailer. Zero values mean the defaults.
type Config struct {
	DB DB // spamd's own client: reads, the config@ mailbox rows, the MAC secret
	// Apply is the admin-role client that applies config mails (nil:
	// configuration by e-mail is off and config mails are refused).
	Apply Applier
	// Auth checks DKIM (nil: only secrets authenticate).
	Auth judge.Authenticator
	// Address is the config address (default "": DefaultLocalPart at any
	// local domain).
	Address string
	// Sender delivers confirmations (default digest.SMTPSender to SMTP).
	Sender Sender
	SMTP   string // the local smtpd (default 127.0.0.1:25)
	// Hostname is our name in EHLO (default os.Hostname).
	Hostname string
	// Scan is how many mailbox rows are read to find the local domains
	// (default 100000).
	Scan   int
	Logger *slog.Logger
}

func (c *Config) applyDefaults() {
	if c.SMTP == "" {
		c.SMTP = "127.0.0.1:25"
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
		if c.Hostname == "" {
			c.Hostname = "localhost"
		}
	}
	if c.Sender == nil {
		c.Sender = digest.SMTPSender{Addr: c.SMTP, Helo: c.Hostname}
	}
	if c.Scan == 0 {
		c.Scan = 100000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Mailer is configuration by e-mail. It is safe for concurrent use; Run
// must be running for the config mailboxes to exist, and waits for
// confirmations still being sent when its ctx ends.
type Mailer struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup // confirmations being sent
}

var _ judge.ConfigMails = (*Mailer)(nil)

// New returns a Mailer.
func New(cfg Config) *Mailer {
	cfg.applyDefaults()
	return &Mailer{cfg: cfg, log: cfg.Logger}
}

// Run creates the config mailbox of every local domain (when applying is
// on) at start and every 5 minutes, until ctx ends; then it waits for the
// confirmations being sent.
func (m *Mailer) Run(ctx context.Context) {
	defer m.wg.Wait()
	if m.cfg.Apply == nil {
		<-ctx.Done()
		return
	}
	for {
		if err := m.EnsureMailboxes(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("create config mailboxes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Minute):
		}
	}
}

// EnsureMailboxes creates the config address's mailbox row: the one
// configured, or DefaultLocalPart at every domain that has a mailbox.
func (m *Mailer) EnsureMailboxes(ctx context.Context) error {
	want := map[string]bool{}
	if m.cfg.Address != "" {
		want[string(model.MailboxContent(m.cfg.Address))] = true
	} else {
		keys, err := m.cfg.DB.ScanKeys(ctx, model.Mailbox, m.cfg.Scan)
		if err != nil {
			return err
		}
		for _, k := range keys {
			row, err := m.cfg.DB.FindKey(ctx, model.Mailbox, k)
			if err != nil {
				return fmt.Errorf("read mailbox row: %w", err)
			}
			if at := bytes.LastIndexByte(row.Content, '@'); at > 0 {
				want[DefaultLocalPart+string(row.Content[at:])] = true
			}
		}
	}
	var reqs []wire.Request
	for a := range want {
		reqs = append(reqs, wire.Request{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: []byte(a)})
	}
	if len(reqs) == 0 {
		return nil
	}
	if _, err := m.cfg.DB.Batch(ctx, reqs); err != nil {
		return fmt.Errorf("create config mailboxes: %w", err)
	}
	return nil
}

// IsConfigAddress reports whether mailbox (a mailbox row content) is the
// config address.
func (m *Mailer) IsConfigAddress(mailbox string) bool {
	if m.cfg.Address != "" {
		return strings.EqualFold(mailbox, m.cfg.Address)
	}
	local, _, ok := strings.Cut(mailbox, "@")
	return ok && strings.EqualFold(local, DefaultLocalPart)
}

// Apply handles a mail to the config address attempted at a.Time: it
// authenticates, applies and confirms. It returns whether to accept the
// mail and why; an error means "try again later" (nothing was applied).
func (m *Mailer) Apply(ctx context.Context, a model.Attempt, mailbox string, raw []byte) (bool, string, error) {
	if m.cfg.Apply == nil {
		return false, ErrOff, nil
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return false, "configuration mail refused: unreadable header", nil
	}
	from, err := singleFrom(msg.Header)
	if err != nil {
		return false, "configuration mail refused: " + err.Error(), nil
	}
	admin, err := config.IsAdmin(ctx, m.cfg.DB, from)
	if err != nil {
		return false, "", err
	}
	if !admin {
		return false, fmt.Sprintf("configuration mail refused: %s is not a configuration admin", from), nil
	}
	text, err := bodyText(msg)
	if err != nil {
		return false, "configuration mail refused: " + err.Error(), nil
	}
	text, secret := cutSecret(text)
	how, sigs, err := m.authenticate(ctx, a, mailbox, raw, from, secret)
	if err != nil {
		return false, "", err
	}
	if how == "" {
		return false, fmt.Sprintf("configuration mail refused: no DKIM signature aligned with %s and no valid secret", domainOf(from)), nil
	}
	// The mail key alone does not catch a replay: anyone holding a signed
	// config mail can add a header field the signature does not cover, or
	// change what relaxed canonicalization ignores, and get a new mail key
	// with a signature that still verifies. So the signatures are recorded
	// too, and a mail carrying a recorded one is a replay.
	for _, k := range append([]model.Key{a.Mail}, sigs...) {
		if done, err := config.Applied(ctx, m.cfg.DB, k); err != nil {
			return false, "", err
		} else if done {
			return true, "configuration mail already applied (replay): nothing changed", nil
		}
	}
	lines, err := config.Parse(text)
	applied, failure, n := false, "a line failed", 0
	var report string
	if err != nil {
		report = "error: " + err.Error() + "\nnothing applied\n"
	} else {
		src := config.Source{Who: from, Via: "mail " + a.Mail.String(), Mail: a.Mail, HasMail: true, Now: a.Time}
		p, err := config.Translate(ctx, m.cfg.DB, lines, src)
		if err != nil {
			return false, "", err
		}
		report = config.Report(p)
		if p.OK() {
			// One batch: the changes and every replay record.
			reqs := slices.Concat(p.Requests, recordRequests(sigs, a.Time))
			_, err := m.cfg.Apply.Batch(ctx, reqs)
			switch {
			case err == nil:
				applied, n = true, len(p.Results)
			case refusedBatch(err):
				// dbd will refuse the same batch every time (a row would
				// get more than model.MaxColumns columns, say): retrying
				// would leave the admin with 451s and no answer. Nothing
				// was applied (the batch is atomic), so say so.
				failure = "dbd refused the changes"
				report = fmt.Sprintf("error: dbd refused the changes: %v\nnothing applied\n", err)
			default:
				return false, "", fmt.Errorf("apply config mail: %w", err)
			}
		}
	}
	reason := fmt.Sprintf("configuration mail from %s (%s): ", from, how)
	if applied {
		reason += fmt.Sprintf("%d changes applied", n)
	} else {
		reason += failure + ", nothing applied"
	}
	m.log.Info("configuration mail", "from", from, "auth", how, "mail", a.Mail, "ok", applied)
	m.confirm(mailbox, from, msg.Header.Get("Message-ID"), applied, report)
	return true, reason, nil
}

// refusedBatch reports whether dbd refused a batch for what it is (bad or
// too large), so that sending it again cannot succeed.
func refusedBatch(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && (we.Code == wire.CodeBadRequest || we.Code == wire.CodeTooLarge)
}

// authenticate returns how the admin from is authenticated ("" if not)
// and, when by DKIM, the replay keys of the aligned signatures
// (signatureKeys).
func (m *Mailer) authenticate(ctx context.Context, a model.Attempt, mailbox string, raw []byte, from, secret string) (string, []model.Key, error) {
	if m.cfg.Auth != nil {
		res := m.cfg.Auth.Check(ctx, signal.Envelope{ClientIP: a.ClientIP(), Helo: a.Helo, From: a.From, Rcpt: mailbox}, raw)
		if res.DKIM == signal.Pass {
			var aligned []string
			for _, d := range res.DKIMDomains {
				if msgauth.AlignedRelaxed(d, domainOf(from)) {
					aligned = append(aligned, d)
				}
			}
			if len(aligned) > 0 {
				return "DKIM d=" + aligned[0], signatureKeys(raw, aligned), nil
			}
		}
	}
	if secret == "" {
		return "", nil, nil
	}
	hash, ok, err := config.AdminSecretHash(ctx, m.cfg.DB, from)
	if err != nil || !ok {
		return "", nil, err
	}
	if good, err := passwd.Check(secret, hash); err != nil || !good {
		if err != nil {
			m.log.Warn("an admin's secret hash cannot be checked", "admin", from, "err", err)
		}
		return "", nil, nil
	}
	return "secret", nil, nil
}

// maxSignatures bounds the DKIM-Signature fields read for replay keys
// (msgauth verifies fewer).
const maxSignatures = 32

// signatureKeys returns a replay key for each DKIM-Signature field of raw
// whose d= is one of domains (those that verified and align with From):
// the hash of its decoded b= value, which signs the body hash and the
// signed header fields. Which of several signatures of one domain
// verified is not known here, so each gets a key; a replay must keep the
// one that verifies, and that one is recorded. b= is decoded, so a
// refolded or re-padded value is still the same signature. Domains are
// compared as msgauth.ASCIIDomain gives them.
func signatureKeys(raw []byte, domains []string) []model.Key {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	var keys []model.Key
	for i, f := range msg.Header["Dkim-Signature"] {
		if i == maxSignatures {
			break
		}
		var d, b string
		for tag := range strings.SplitSeq(f, ";") {
			k, v, _ := strings.Cut(tag, "=")
			v = strings.Join(strings.Fields(v), "") // RFC 6376 §3.2: FWS inside values is ignored
			switch strings.TrimSpace(k) {
			case "d":
				// As msgauth reports it: a d= written with U-labels
				// (RFC 8616) verifies as its A-label.
				d = msgauth.ASCIIDomain(v)
			case "b":
				b = v
			}
		}
		sig, err := base64.StdEncoding.DecodeString(b)
		if err != nil || len(sig) == 0 || !slices.ContainsFunc(domains, func(v string) bool { return msgauth.ASCIIDomain(v) == d }) {
			continue
		}
		keys = append(keys, model.KeyOf(model.Text, append([]byte("twinmx-config-dkim/1\n"), sig...)))
	}
	return keys
}

// recordRequests record the replay keys as applied at t, like the
// mail key's record config.Translate makes.
func recordRequests(keys []model.Key, t time.Time) []wire.Request {
	var reqs []wire.Request
	for _, k := range keys {
		mc := config.MailContent(k)
		reqs = append(reqs,
			wire.Request{Op: wire.OpFindOrInsert, Table: model.Text, Content: mc},
			wire.Request{Op: wire.OpSet, Table: model.Text, Ref: wire.Ref{ByKey: true, Key: model.KeyOf(model.Text, mc)},
				Name: config.ColApplied, Value: uint64(max(t.UnixMilli(), 1))})
	}
	return reqs
}

// fromParser reads the From address whatever charset an encoded-word
// display name is in: only the address is used. net/mail alone decodes
// UTF-8, ISO-8859-1 and US-ASCII and fails the whole field on any other
// charset, so an admin whose client writes "=?windows-1252?q?J=F6rg?="
// (Outlook) had every config mail refused.
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

func singleFrom(h mail.Header) (string, error) {
	vals := h["From"]
	if len(vals) != 1 {
		return "", errors.New("want exactly one From field")
	}
	list, err := fromParser.ParseList(vals[0])
	if err != nil || len(list) != 1 {
		return "", errors.New("want exactly one From address")
	}
	return strings.ToLower(list[0].Address), nil
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}

// maxBody bounds the decoded text read from a config mail.
const maxBody = config.MaxText + 1

// bodyText returns the mail's text: the body of a text/plain mail, or the
// first text/plain part of a multipart one, with its transfer encoding
// decoded. Lines from a signature separator ("-- ") on are dropped.
func bodyText(msg *mail.Message) (string, error) {
	b, err := textPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0)
	if err != nil {
		return "", err
	}
	if len(b) >= maxBody {
		return "", fmt.Errorf("the text is longer than %d bytes", config.MaxText)
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	if i := strings.Index(s, "\n-- \n"); i >= 0 {
		s = s[:i+1]
	} else if strings.HasPrefix(s, "-- \n") {
		s = ""
	}
	return s, nil
}

func textPart(ctype, cte string, body io.Reader, depth int) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype == "" {
		mt, err = "text/plain", nil
	}
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q", ctype)
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && depth < 4:
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err != nil {
				return nil, errors.New("no text/plain part")
			}
			b, err := textPart(part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part, depth+1)
			if err == nil {
				return b, nil
			}
		}
	case mt == "text/plain":
		var r io.Reader = body
		switch strings.ToLower(strings.TrimSpace(cte)) {
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, &crlfStripper{r: body})
		}
		b, err := io.ReadAll(io.LimitReader(r, maxBody))
		if err != nil || len(b) >= maxBody || !strings.EqualFold(params["format"], "flowed") {
			return b, err // a text too long is refused by bodyText as it is
		}
		return unflow(b, strings.EqualFold(params["delsp"], "yes")), nil
	}
	return nil, fmt.Errorf("the commands must be text/plain, not %s", mt)
}

// unflow undoes format=flowed (RFC 3676 §4.2), which Thunderbird and
// Apple Mail use for plain text: a line ending in a space continues on
// the next, so a command longer than the client's wrap width (72) arrives
// as several lines, and each part failed as a command of its own. A
// leading space of a line is space-stuffing (§4.4) and dropped; with
// delsp=yes the space before a soft break is dropped too. Quoted lines
// ('>') are left as they are and never joined: no command starts with
// '>', and a quoted line must not become part of one. Nothing is joined
// to the signature separator "-- ", which bodyText looks for, nor to a
// line starting with the word secret: a client that left a space before
// a hard break must not turn the secret into part of a command, which the
// confirmation would repeat.
func unflow(b []byte, delsp bool) []byte {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	var out strings.Builder
	out.Grow(len(b))
	for i, l := range lines {
		plain := !strings.HasPrefix(l, ">")
		if plain {
			l = strings.TrimPrefix(l, " ")
		}
		soft := plain && l != "-- " && strings.HasSuffix(l, " ") && i+1 < len(lines) && joinable(lines[i+1])
		if soft && delsp {
			l = l[:len(l)-1]
		}
		out.WriteString(l)
		if !soft && i+1 < len(lines) {
			out.WriteByte('\n')
		}
	}
	return []byte(out.String())
}

// joinable reports whether a flowed line may continue on next (unflow).
func joinable(next string) bool {
	if strings.HasPrefix(next, ">") {
		return false
	}
	next = strings.TrimPrefix(next, " ")
	_, kind := secretLine(next)
	return next != "-- " && kind == noSecret
}

// crlfStripper drops line breaks from base64 text.
type crlfStripper struct{ r io.Reader }

func (c *crlfStripper) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, b := range p[:n] {
		if b != '\r' && b != '\n' {
			p[j] = b
			j++
		}
	}
	return j, err
}

// cutSecret removes every secret line (blanking it, so line numbers
// stay) and returns the text and the last secret given. A secret line is
// what the language would read as a first word "secret" followed by ":",
// however written: any case, spaces or tabs around the words and the
// colon ("Secret : s", "secret:s"). A line whose first word is "secret"
// but that is no secret line ("secret s", "secret= s") cannot be a
// command either; it is replaced by the bare word, so it still fails as
// an unknown command and nothing is applied, but the confirmation, which
// repeats a failed line, never shows what followed the word.
func cutSecret(text string) (string, string) {
	lines := strings.Split(text, "\n")
	var secret string
	for i, l := range lines {
		v, kind := secretLine(l)
		switch kind {
		case isSecret:
			secret, lines[i] = v, ""
		case notSecret:
			lines[i] = "secret"
		}
	}
	return strings.Join(lines, "\n"), secret
}

const (
	noSecret  = iota // not about a secret
	isSecret         // a secret line
	notSecret        // first word "secret", but no secret line
)

// secretLine reports whether l is a secret line and returns its secret.
func secretLine(l string) (string, int) {
	s := strings.TrimLeft(l, " \t")
	if len(s) < len("secret") || !strings.EqualFold(s[:len("secret")], "secret") {
		return "", noSecret
	}
	rest := s[len("secret"):]
	if v, ok := strings.CutPrefix(strings.TrimLeft(rest, " \t"), ":"); ok {
		return strings.TrimSpace(v), isSecret
	}
	// "secrets ..." or "secretary" is another word; "secret", "secret s"
	// and "secret=s" start with the word secret.
	if r, _ := utf8.DecodeRuneInString(rest); rest == "" || !unicode.IsLetter(r) && !unicode.IsDigit(r) {
		return "", notSecret
	}
	return "", noSecret
}

// Confirmations.

var macContent = []byte("twinmx-config-mac/1")

// macKey returns the confirmations' MAC secret (nil if there is none and
// create is false), creating it if dbd has none. It is kept as the
// digest's secret is (digest.SharedKey): only the instance that created
// the row sets its columns and every instance uses what dbd holds, read
// on every call. Each instance used to set its own columns and keep its
// own result forever, so two instances creating it at once could keep
// different secrets, and one's confirmations were judged by the other
// like any mail. Two sites creating it before replication still merge
// into one secret; a confirmation made just before that does not verify.
func (m *Mailer) macKey(ctx context.Context, create bool) (*[32]byte, error) {
	k, ok, err := digest.SharedKey(ctx, m.cfg.DB, macContent, create)
	if err != nil {
		return nil, fmt.Errorf("config mac secret: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return &k, nil
}

func macOf(k *[32]byte, id, rcpt, subject string, body []byte) string {
	h := hmac.New(sha256.New, k[:])
	for _, p := range []string{"twinmx-config-confirmation/1", id, strings.ToLower(rcpt), subject,
		strings.ReplaceAll(string(body), "\r\n", "\n")} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

const macHeader = "X-Twinmx-Config"

// Own reports whether raw is a confirmation spamd made for mailbox.
func (m *Mailer) Own(ctx context.Context, mailbox string, raw []byte) (bool, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return false, nil
	}
	v, ok := strings.CutPrefix(msg.Header.Get(macHeader), "v1 ")
	if !ok {
		return false, nil
	}
	k, err := m.macKey(ctx, false)
	if err != nil || k == nil {
		return false, err
	}
	body, err := io.ReadAll(io.LimitReader(msg.Body, 1<<20))
	if err != nil {
		return false, nil
	}
	want := macOf(k, msg.Header.Get("Message-ID"), mailbox, msg.Header.Get("Subject"), body)
	return hmac.Equal([]byte(v), []byte(want)), nil
}

// confirm sends the report to the admin in the background.
func (m *Mailer) confirm(configAddr, to, inReplyTo string, ok bool, report string) {
	m.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		raw, err := m.confirmation(ctx, configAddr, to, inReplyTo, ok, report)
		if err == nil {
			err = m.cfg.Sender.Send(ctx, "", rcptPath(to), raw)
		}
		if err != nil {
			m.log.Error("send a configuration confirmation", "to", to, "err", err)
		}
	})
}

// rcptPath returns addr (as net/mail returns it: a quoted local part
// unquoted) as an RCPT path's address: the local part quoted again where
// it needs it ("a b"@x), without the angle brackets the client adds.
func rcptPath(addr string) string {
	return strings.TrimSuffix(strings.TrimPrefix((&mail.Address{Address: addr}).String(), "<"), ">")
}

// maxLine is the longest line a header may have, without CRLF (RFC 5322
// §2.1.1).
const maxLine = 998

// writeField writes the header field name: value to b, folded (a CRLF
// before a space, which unfolding removes again, so the value is kept as
// it is) where a line would be longer than maxLine. It writes nothing and
// reports false when value is empty or a part of it between spaces cannot
// fit on a line of its own.
func writeField(b *bytes.Buffer, name, value string) bool {
	value = strings.TrimSpace(value)
	if value == "" {
		return false
	}
	lines := []string{name + ":"}
	for _, w := range strings.Split(value, " ") {
		last := &lines[len(lines)-1]
		switch {
		case len(*last)+1+len(w) <= maxLine:
			*last += " " + w
		case w != "" && 1+len(w) <= maxLine: // never a line of spaces only
			lines = append(lines, " "+w)
		default:
			return false
		}
	}
	b.WriteString(strings.Join(lines, "\r\n"))
	b.WriteString("\r\n")
	return true
}

func (m *Mailer) confirmation(ctx context.Context, configAddr, to, inReplyTo string, ok bool, report string) ([]byte, error) {
	k, err := m.macKey(ctx, true)
	if err != nil {
		return nil, err
	}
	var nonce [12]byte
	rand.Read(nonce[:])
	id := "<" + hex.EncodeToString(nonce[:]) + ".config@" + m.cfg.Hostname + ">"
	subject := "twinmx config: applied"
	if !ok {
		subject = "twinmx config: NOT applied (errors)"
	}
	var body bytes.Buffer
	w := quotedprintable.NewWriter(&body)
	intro := "Your configuration mail was applied:\n\n"
	if !ok {
		intro = "Your configuration mail was NOT applied: nothing changed.\n\n"
	}
	io.WriteString(w, strings.ReplaceAll(intro+report, "\n", "\r\n"))
	w.Close()
	var b bytes.Buffer
	// Address.String quotes a local part that needs it ("a b"@x); written
	// as it is, such an address makes a To field no reader parses.
	from := (&mail.Address{Name: "twinmx config", Address: configAddr}).String()
	rcpt := (&mail.Address{Address: to}).String()
	if !writeField(&b, "From", from) || !writeField(&b, "To", rcpt) {
		return nil, fmt.Errorf("confirmation to %s: an address is longer than a header line", to)
	}
	fmt.Fprintf(&b, "Subject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n", subject, time.Now().UTC().Format(time.RFC1123Z), id)
	// The admin's Message-ID threads the answer. One that cannot fit on a
	// header line (a msg-id cannot be folded inside) is left out: the
	// confirmation matters, the threading does not.
	if irt := strings.TrimSpace(inReplyTo); irt != "" && !strings.ContainsAny(irt, "\r\n") {
		if writeField(&b, "In-Reply-To", irt) {
			writeField(&b, "References", irt)
		} else {
			m.log.Warn("a configuration mail's Message-ID is too long to answer in In-Reply-To", "to", to, "bytes", len(irt))
		}
	}
	fmt.Fprintf(&b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
	fmt.Fprintf(&b, "%s: v1 %s\r\n\r\n", macHeader, macOf(k, id, string(model.MailboxContent(to)), subject, body.Bytes()))
	b.Write(body.Bytes())
	return b.Bytes(), nil
}
