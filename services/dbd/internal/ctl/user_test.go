package ctl

import (
	"context"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/wire/mailbox"
	"github.com/twinmx/twinmx/services/dbd/internal/auth"
)

// TestUserPasswordTooLong: a password from stdin was read through a
// 4096-byte limit and silently cut there, so the account got a password
// its owner never typed. A password longer than every login path takes
// (maxPasswordLen) must be refused with exit 2 before anything is set;
// one of exactly maxPasswordLen bytes is set and logs in.
func TestUserPasswordTooLong(t *testing.T) {
	db := closedDB(t) // a refusal exits 2 before connecting; a connect fails with 1
	for name, stdin := range map[string]string{
		"one byte over":           strings.Repeat("p", maxPasswordLen+1) + "\n",
		"one byte over with CRLF": strings.Repeat("p", maxPasswordLen+1) + "\r\n",
		"5000 bytes":              strings.Repeat("p", 5000) + "\n",
		"4097 bytes, no newline":  strings.Repeat("p", 4097),
	} {
		_, errs, code := runCtl(t, stdin, append(db, "user", "add", "jo", "--mailbox", "jo@x.example")...)
		if code != 2 || !strings.Contains(errs, "at most 245 bytes") {
			t.Errorf("user add, password %s: exit %d, stderr %q; want 2 and at most 245 bytes", name, code, errs)
		}
	}

	e, db := liveDB(t)
	pw := strings.Repeat("p", maxPasswordLen)
	if _, errs, code := runCtl(t, pw+"\n", append(db, "user", "add", "jo", "--mailbox", "jo@x.example")...); code != 0 {
		t.Fatalf("user add with a %d-byte password: exit %d: %s", len(pw), code, errs)
	}
	st := mailbox.New(e.Client(auth.Mailbox))
	if _, err := st.Login(context.Background(), "jo", pw); err != nil {
		t.Errorf("login with the %d-byte password: %v", len(pw), err)
	}
	long := pw + strings.Repeat("q", 4096)
	if out, errs, code := runCtl(t, long, append(db, "user", "passwd", "jo")...); code != 2 || out != "" {
		t.Errorf("user passwd with a %d-byte password: exit %d, stdout %q, stderr %q; want 2", len(long), code, out, errs)
	}
	if _, err := st.Login(context.Background(), "jo", pw); err != nil {
		t.Errorf("after a refused user passwd, login with the old password: %v", err)
	}
}

// TestConfigHashSecretTooLong: `config hash` read stdin through the same
// 4096-byte limit and hashed a secret cut there. A longer one is refused.
func TestConfigHashSecretTooLong(t *testing.T) {
	if out, errs, code := runCtl(t, strings.Repeat("s", adminSecret.max+1), "config", "hash"); code != 2 || out != "" || !strings.Contains(errs, "at most 4096 bytes") {
		t.Errorf("config hash of a 4097-byte secret: exit %d, stdout %q, stderr %q; want 2", code, out, errs)
	}
	if out, errs, code := runCtl(t, strings.Repeat("s", adminSecret.max)+"\r\n", "config", "hash"); code != 0 || !strings.HasPrefix(out, "$argon2id$") {
		t.Errorf("config hash of a 4096-byte secret: exit %d, stdout %q, stderr %q; want a hash", code, out, errs)
	}
}
