package config

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Reader reads rows by key; *client.Client implements it. A missing row
// is client.ErrNotFound.
type Reader interface {
	FindKey(ctx context.Context, t model.Table, k model.Key) (*wire.Row, error)
}

var _ Reader = (*client.Client)(nil)

// Row contents and columns of this package (docs/spamd.md, "Configuration
// by e-mail"). Every value that says "on or off" is a model.MemberValue.
const (
	adminHeader  = "twinmx-config-admin/1"
	secretHeader = "twinmx-config-secret/1"
	changeHeader = "twinmx-config-change/1"
	mailHeader   = "twinmx-config-mail/1"

	// ColAdmin on an admin row (config table): is the address an admin.
	ColAdmin = "admin"
	// ColChange on a change row (config table): its time, Unix ms.
	ColChange = "config.change"
	// ColApplied on a config mail's record (text table): when it was
	// applied, Unix ms.
	ColApplied = "config.applied"
	// NoSecret is the hash of a secret row that switches the secret off.
	NoSecret = "none"
)

// AdminContent is the content of the config row of an admin address. Its
// column ColAdmin says whether it is an admin; its secret is the text row
// SecretContent linked by model.PasswordColumn, the newest link wins.
func AdminContent(addr string) []byte {
	return []byte(adminHeader + "\naddress: " + strings.ToLower(addr))
}

// ParseAdminContent returns the address of an admin row's content.
func ParseAdminContent(b []byte) (string, bool) {
	a, ok := bytes.CutPrefix(b, []byte(adminHeader+"\naddress: "))
	return string(a), ok && len(a) > 0
}

// SecretContent is the text row holding an admin's secret hash (an
// argon2id PHC string, or NoSecret).
func SecretContent(addr, hash string) []byte {
	return []byte(secretHeader + "\naddress: " + strings.ToLower(addr) + "\nhash: " + hash)
}

// ParseSecretContent returns the hash of a secret row.
func ParseSecretContent(b []byte) (string, bool) {
	_, h, ok := bytes.Cut(b, []byte("\nhash: "))
	return string(h), ok && bytes.HasPrefix(b, []byte(secretHeader+"\n"))
}

// MailContent is the text row recording that the config mail with the
// mail key k was applied (column ColApplied).
func MailContent(k model.Key) []byte { return []byte(mailHeader + "\nmail: " + k.String()) }

// SpamListContent is the content of the text row of one entry of spamd's
// allow/block list of a mailbox: a sender address or "@domain". Its
// column ColSpamList holds SpamListValue.
func SpamListContent(mailbox, sender string) []byte {
	return fmt.Appendf(nil, "twinmx-list/1\nmailbox: %s\nsender: %s", strings.ToLower(mailbox), strings.ToLower(sender))
}

// ColSpamList is the column of a spamd list row.
const ColSpamList = "list"

// Kinds of a spamd list entry, in the low two bits of ColSpamList; the
// high bits are the change time in Unix ms, so a later change wins on
// every site.
const (
	ListRemoved = 0
	ListAllow   = 1
	ListBlock   = 2
)

// SpamListValue is the ColSpamList value for kind set at t.
func SpamListValue(t time.Time, kind uint64) uint64 {
	return uint64(max(t.UnixMilli(), 0))<<2 | kind&3
}

// Change is one accepted command, as the config table keeps it.
type Change struct {
	When     time.Time
	Who      string // the admin's address, or "dbctl"
	Via      string // "mail <key>" or "dbctl"
	Line     string // the command as written
	Previous string // what it replaced
}

// ChangeContent is the content of the config row of one change; its
// column ColChange is its time.
func ChangeContent(c Change) []byte {
	one := func(s string) string { return strings.Map(noBreak, s) }
	return fmt.Appendf(nil, "%s\nwhen: %s\nwho: %s\nvia: %s\nline: %s\nprevious: %s\n", changeHeader,
		c.When.UTC().Format(time.RFC3339Nano), one(c.Who), one(c.Via), one(c.Line), one(c.Previous))
}

func noBreak(r rune) rune {
	if r == '\n' || r == '\r' {
		return ' '
	}
	return r
}

// ErrNotChange is returned by ParseChange for a row of another kind.
var ErrNotChange = errors.New("config: not a change row")

// ParseChange reads a change row's content.
func ParseChange(b []byte) (Change, error) {
	var c Change
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<10)
	if !sc.Scan() || sc.Text() != changeHeader {
		return c, ErrNotChange
	}
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		switch k {
		case "when":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return c, fmt.Errorf("%w: when %q", ErrNotChange, v)
			}
			c.When = t
		case "who":
			c.Who = v
		case "via":
			c.Via = v
		case "line":
			c.Line = v
		case "previous":
			c.Previous = v
		}
	}
	if c.When.IsZero() || c.Line == "" {
		return c, ErrNotChange
	}
	return c, nil
}

// find reads a row; ok is false if it does not exist.
func find(ctx context.Context, r Reader, t model.Table, content []byte) (*wire.Row, bool, error) {
	row, err := r.FindKey(ctx, t, model.KeyOf(t, content))
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s row: %w", t, err)
	}
	return row, true, nil
}

// IsAdmin reports whether addr is a listed admin.
func IsAdmin(ctx context.Context, r Reader, addr string) (bool, error) {
	row, ok, err := find(ctx, r, model.Config, AdminContent(addr))
	if err != nil || !ok {
		return false, err
	}
	return model.IsMember(row.State.Col(ColAdmin)), nil
}

// AdminSecretHash returns the hash of an admin's current secret; ok is
// false when the admin has none (never set, or set to none).
func AdminSecretHash(ctx context.Context, r Reader, addr string) (hash string, ok bool, err error) {
	row, found, err := find(ctx, r, model.Config, AdminContent(addr))
	if err != nil || !found {
		return "", false, err
	}
	k, linked := model.CurrentPassword(row.State)
	if !linked {
		return "", false, nil
	}
	srow, err := r.FindKey(ctx, model.Text, k)
	if errors.Is(err, client.ErrNotFound) {
		return "", false, nil // linked, not replicated here yet
	}
	if err != nil {
		return "", false, fmt.Errorf("read secret row: %w", err)
	}
	h, valid := ParseSecretContent(srow.Content)
	if !valid || h == NoSecret {
		return "", false, nil
	}
	return h, true, nil
}

// Applied reports whether the config mail with mail key k was applied
// before (a replay).
func Applied(ctx context.Context, r Reader, k model.Key) (bool, error) {
	row, ok, err := find(ctx, r, model.Text, MailContent(k))
	if err != nil || !ok {
		return false, err
	}
	return row.State.Col(ColApplied) > 0, nil
}
