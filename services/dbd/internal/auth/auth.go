// Package auth holds dbd's authorisation: the clients file that maps client
// public keys to roles, and the role table that says which operations,
// tables and columns each role may use (SPEC §4: least privilege).
//
// The role table is deliberately code, not configuration: a role is a
// security boundary reviewed with the code that relies on it. docs/roles.md
// shows the same table for operators.
package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// Role is what a client key may do.
type Role string

// The roles. Each service gets its own key with the narrowest role.
const (
	Admin   Role = "admin"   // dbctl: everything but merge
	SMTPD   Role = "smtpd"   // store received mail, read mailboxes/verdicts, mark acknowledged
	SpamD   Role = "spamd"   // read mail, write verdicts and the spam model
	BackupD Role = "backupd" // replication: changes, merge, the backed-up mark
	Mailbox Role = "mailbox" // pop3d/imapd: read mailboxes, flags, deletions, APPEND
	Notify  Role = "notify"  // smsd: read accepted mail, claim notifications
)

// Roles lists every role.
func Roles() []Role { return []Role{Admin, SMTPD, SpamD, BackupD, Mailbox, Notify} }

// ErrForbidden is returned when a role may not do what was asked.
var ErrForbidden = errors.New("auth: forbidden")

type tables map[model.Table]bool

func allTables() tables {
	ts := tables{}
	for _, t := range model.Tables() {
		ts[t] = true
	}
	return ts
}

func some(ts ...model.Table) tables {
	m := tables{}
	for _, t := range ts {
		m[t] = true
	}
	return m
}

// rule is one role's permissions. Ops with no entry are refused.
type rule struct {
	read   tables                   // find, watch, scan
	insert tables                   // find-or-insert
	set    map[model.Table][]string // column name prefixes a role may raise ("" = any)
	incr   tables                   // increment
	other  map[wire.Op]bool         // table-less ops: changes, merge, status, dump, cursor, checkpoint
}

var mailTables = []model.Table{model.Body, model.Header, model.Received, model.Mail, model.MsgID}

var rules = map[Role]rule{
	Admin: {
		read: allTables(), insert: allTables(), incr: allTables(),
		set:   anyColumn(model.Tables()...),
		other: ops(wire.OpChanges, wire.OpStatus, wire.OpDump, wire.OpCursor, wire.OpCheckpoint),
	},
	SMTPD: {
		// smtpd stores mail but cannot read it back: no find on body or
		// header (Postfix-style privilege separation).
		read:   some(model.Mailbox, model.Receive, model.Mail, model.MsgID, model.Config, model.RDNS, model.ThrowIn),
		insert: some(append(mailTables, model.Receive, model.ThrowIn, model.Capture, model.RDNS)...),
		set: map[model.Table][]string{
			model.Receive: {"ack", "rcvd.", model.POP3SizePrefix},
			model.ThrowIn: {""},
			model.Capture: {""},
			model.RDNS:    {""},
		},
		incr:  some(model.ThrowIn, model.RDNS, model.Receive),
		other: ops(wire.OpStatus),
	},
	SpamD: {
		read:   allTables(),
		insert: some(model.Text, model.Config, model.RDNS, model.Mailbox),
		set: map[model.Table][]string{
			model.Receive: {"verdict", "spam."},
			model.Mail:    {"spam."},
			model.Text:    {""},
			model.Config:  {""},
			model.RDNS:    {""},
		},
		incr:  some(model.Text, model.Config, model.RDNS, model.Receive, model.Mailbox),
		other: ops(wire.OpStatus),
	},
	BackupD: {
		read: allTables(),
		set: map[model.Table][]string{
			model.Header:  {"backedup"},
			model.Body:    {"backedup"},
			model.Mail:    {"backedup"},
			model.Receive: {"backedup"},
		},
		other: ops(wire.OpChanges, wire.OpMerge, wire.OpStatus, wire.OpCursor),
	},
	Mailbox: {
		read:   some(append(mailTables, model.Mailbox, model.Receive, model.POP3, model.Text, model.Config)...),
		insert: some(append(mailTables, model.Receive, model.Text)...),
		set: map[model.Table][]string{
			model.Receive: {"deleted", "imap.", "pop3."},
			model.Text:    {"imap.", "spam.feedback"},
		},
		incr:  some(model.Receive, model.Text, model.POP3),
		other: ops(wire.OpStatus),
	},
	Notify: {
		// smsd forwards copies of accepted mail byte for byte, so it
		// reads the whole mail: header, body and the received row.
		read:   some(model.Receive, model.Mail, model.Header, model.Body, model.Received, model.Mailbox, model.Config, model.Text),
		insert: some(model.Text),
		set: map[model.Table][]string{
			model.Receive: {"sms.", "fwd."},
			model.Text:    {"sms."},
		},
		incr:  some(model.Text),
		other: ops(wire.OpStatus),
	},
}

func anyColumn(ts ...model.Table) map[model.Table][]string {
	m := map[model.Table][]string{}
	for _, t := range ts {
		m[t] = []string{""}
	}
	return m
}

func ops(os ...wire.Op) map[wire.Op]bool {
	m := map[wire.Op]bool{}
	for _, o := range os {
		m[o] = true
	}
	return m
}

// ParseRole returns the role with the given name.
func ParseRole(s string) (Role, error) {
	if _, ok := rules[Role(s)]; ok {
		return Role(s), nil
	}
	return "", fmt.Errorf("auth: unknown role %q (want one of %v)", s, Roles())
}

// Check reports whether role r may perform req. For a batch every
// sub-request is checked. The error wraps ErrForbidden.
func (r Role) Check(req *wire.Request) error {
	ru, ok := rules[r]
	if !ok {
		return fmt.Errorf("%w: unknown role %q", ErrForbidden, r)
	}
	deny := func(what string) error {
		return fmt.Errorf("%w: role %s may not %s", ErrForbidden, r, what)
	}
	switch req.Op {
	case wire.OpPing:
		return nil
	case wire.OpFind, wire.OpWatch, wire.OpScan, wire.OpList:
		if !ru.read[req.Table] {
			return deny(fmt.Sprintf("%s table %s", req.Op, req.Table))
		}
	case wire.OpMail, wire.OpMails:
		// The rows that make a mail: a role needs to read each of them.
		for _, t := range []model.Table{model.Receive, model.Mail, model.Header, model.Body, model.Received} {
			if !ru.read[t] {
				return deny(fmt.Sprintf("mail (needs to read %s)", t))
			}
		}
	case wire.OpFindOrInsert:
		if !ru.insert[req.Table] {
			return deny(fmt.Sprintf("insert into %s", req.Table))
		}
	case wire.OpIncrement:
		if !ru.incr[req.Table] {
			return deny(fmt.Sprintf("increment in %s", req.Table))
		}
	case wire.OpSet:
		if !columnAllowed(ru.set[req.Table], req.Name) {
			return deny(fmt.Sprintf("set column %s of %s", req.Name, req.Table))
		}
	case wire.OpBatch:
		for i := range req.Batch {
			if err := r.Check(&req.Batch[i]); err != nil {
				return err
			}
		}
	case wire.OpArm:
		// Its conditions read rows; its sub-requests are a batch's.
		for _, c := range req.Conds {
			if !ru.read[c.Table] {
				return deny(fmt.Sprintf("arm on table %s", c.Table))
			}
		}
		for i := range req.Batch {
			if err := r.Check(&req.Batch[i]); err != nil {
				return err
			}
		}
	default:
		if !ru.other[req.Op] {
			return deny(req.Op.String())
		}
	}
	return nil
}

func columnAllowed(prefixes []string, col string) bool {
	for _, p := range prefixes {
		if p == "" || col == p || strings.HasSuffix(p, ".") && strings.HasPrefix(col, p) {
			return true
		}
	}
	return false
}

// Client is one listed client key.
type Client struct {
	Role Role
	// NotAfter is the last moment the key is accepted; zero means no limit.
	NotAfter time.Time
	// Name is the key file as the clients file names it, for logs (a key
	// itself is not something an operator recognises).
	Name string
	Line int // the line of the clients file that lists it (its first)
}

// Expired reports whether the key is past its not-after at now.
func (c Client) Expired(now time.Time) bool {
	return !c.NotAfter.IsZero() && now.After(c.NotAfter)
}

// ExpiryWarning is how long before a key's not-after dbd starts warning
// of it (log, dbctl status): two weeks leave time to rotate it.
const ExpiryWarning = 14 * 24 * time.Hour

// ErrExpired refuses a listed key whose not-after has passed.
var ErrExpired = errors.New("client key expired")

// Clients maps client public keys to roles. It is immutable once loaded; a
// reload builds a new one.
type Clients struct {
	byKey map[wire.PublicKey]Client
}

// Lookup returns the listed client of key, expired or not.
func (c *Clients) Lookup(key wire.PublicKey) (Client, bool) {
	cl, ok := c.byKey[key]
	return cl, ok
}

// Len returns the number of listed keys.
func (c *Clients) Len() int { return len(c.byKey) }

// Listed is a client with its key.
type Listed struct {
	Key wire.PublicKey
	Client
}

// All returns every listed client in the order of the clients file.
func (c *Clients) All() []Listed {
	out := make([]Listed, 0, len(c.byKey))
	for k, cl := range c.byKey {
		out = append(out, Listed{Key: k, Client: cl})
	}
	slices.SortFunc(out, func(a, b Listed) int { return a.Line - b.Line })
	return out
}

// WithNotAfter returns the clients that have a not-after, expired ones
// included, soonest first.
func (c *Clients) WithNotAfter() []Client {
	var out []Client
	for _, cl := range c.byKey {
		if !cl.NotAfter.IsZero() {
			out = append(out, cl)
		}
	}
	slices.SortFunc(out, func(a, b Client) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

// maxClientsLine bounds one line of the clients file.
const maxClientsLine = 1 << 20

// LoadClients reads a clients file: one client a line, "ROLE PATH-TO-PUBKEY
// [not-after=WHEN]" (a relative path is relative to the file's folder);
// blank lines and lines starting with '#' are ignored. Every problem is
// reported, with line numbers.
func LoadClients(path string) (*Clients, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read clients file: %w", err)
	}
	return ParseClientsFile(path, b)
}

// ParseClientsFile parses the content of the clients file at path, read
// beforehand (LoadClients's rules); relative key paths are resolved from
// path's folder.
func ParseClientsFile(path string, content []byte) (*Clients, error) {
	return parseClients(bytes.NewReader(content), path, func(p string) (wire.PublicKey, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		return wire.LoadPublicKey(p)
	})
}

// lineForm is the form of a clients-file line, for error messages.
const lineForm = `want "ROLE PATH-TO-PUBKEY [not-after=WHEN]"`

// parseClients parses a clients file read from r (named path in errors);
// loadKey reads the public key a line names. It is LoadClients without the
// file system, so the parser can be fuzzed.
func parseClients(r io.Reader, path string, loadKey func(string) (wire.PublicKey, error)) (*Clients, error) {
	c := &Clients{byKey: map[wire.PublicKey]Client{}}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxClientsLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 && len(fields) != 3 {
			errs = append(errs, fmt.Errorf("%s:%d: %s", path, n, lineForm))
			continue
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, n, err))
			continue
		}
		cl := Client{Role: role, Name: fields[1], Line: n}
		if len(fields) == 3 {
			v, ok := strings.CutPrefix(fields[2], "not-after=")
			if !ok {
				errs = append(errs, fmt.Errorf("%s:%d: %s", path, n, lineForm))
				continue
			}
			if cl.NotAfter, err = ParseNotAfter(v); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %w", path, n, err))
				continue
			}
		}
		key, err := loadKey(fields[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, n, err))
			continue
		}
		if prev, dup := c.byKey[key]; dup {
			if prev.Role != role {
				errs = append(errs, fmt.Errorf("%s:%d: key %s listed with two roles (%s, %s)", path, n, fields[1], prev.Role, role))
				continue
			}
			if !prev.NotAfter.Equal(cl.NotAfter) {
				errs = append(errs, fmt.Errorf("%s:%d: key %s listed with two not-after times (%s, %s)",
					path, n, fields[1], formatNotAfter(prev.NotAfter), formatNotAfter(cl.NotAfter)))
				continue
			}
			continue // the first line stays the one named
		}
		c.byKey[key] = cl
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: read clients file: %w", path, n+1, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseNotAfter reads a not-after value: a date (2027-03-31: the key works
// through that whole day, UTC) or an RFC 3339 time (the key works until
// that moment). A date is the common case, and "until the 31st" means the
// 31st included.
func ParseNotAfter(s string) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		return d.AddDate(0, 0, 1).Add(-time.Nanosecond), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not-after %q: want a date (2027-03-31) or an RFC 3339 time (2027-03-31T18:00:00Z)", s)
	}
	return t, nil
}

// formatNotAfter writes a not-after for messages; "never" for none.
func formatNotAfter(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// NewClients builds a Clients from a map (for tests and embedding).
func NewClients(m map[wire.PublicKey]Client) *Clients {
	c := &Clients{byKey: make(map[wire.PublicKey]Client, len(m))}
	for k, cl := range m {
		c.byKey[k] = cl
	}
	return c
}
