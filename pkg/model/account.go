package model

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Accounts (SPEC §8). An account is a pop3 row whose content is
// AccountContent(login). Everything else about it is linked from its
// status columns, so it replicates and merges like any row:
//
//   - its password: a text row PasswordContent(login, hash), linked by the
//     column PasswordColumn(textKey) whose value is the time the password
//     was set (Unix ms). The newest link is the password; a new password is
//     a new text row and a newer link (columns only rise, so an old password
//     can never come back by replication).
//   - its mailboxes: a column MailboxColumn(mailboxKey) per mailbox the
//     login may read, valued by MemberValue: the time of the latest change,
//     with the low bit saying whether the mailbox belongs to the account.
//     A later removal outranks an earlier add and vice versa.
//
// A row has at most MaxColumns columns, so an account can be given about
// 250 passwords and mailboxes over its life; that bound is far above use.
const (
	accountPrefix  = "twinmx-account/1\n"
	passwordPrefix = "twinmx-password/1\n"
	pwColPrefix    = "pw."
	mbxColPrefix   = "mbx."
	// MaxLoginLen bounds a login: POP3 and IMAP clients send it on one line.
	MaxLoginLen = 128
)

// CheckLogin reports whether login can name an account: 1 to MaxLoginLen
// printable ASCII characters other than space, '"' and '\\' (so it needs no
// quoting in POP3 USER or IMAP LOGIN).
func CheckLogin(login string) error {
	if login == "" || len(login) > MaxLoginLen {
		return fmt.Errorf("%w: login must be 1 to %d characters", ErrBadName, MaxLoginLen)
	}
	for i := 0; i < len(login); i++ {
		c := login[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("%w: login %q has a character other than printable ASCII (no space, quote or backslash)", ErrBadName, login)
		}
	}
	return nil
}

// AccountContent returns the content of the pop3 row of login. Logins are
// matched without regard to ASCII case, as mail users expect.
func AccountContent(login string) []byte {
	return []byte(accountPrefix + strings.ToLower(login))
}

// ParseAccountContent returns the login of an account row's content.
func ParseAccountContent(b []byte) (string, error) {
	s, ok := bytes.CutPrefix(b, []byte(accountPrefix))
	if !ok || !canonicalLogin(s) {
		return "", fmt.Errorf("%w: not an account row", ErrBadContent)
	}
	return string(s), nil
}

// canonicalLogin reports whether s is a login as AccountContent and
// PasswordContent write it: valid and lower-case. A row with an upper-case
// login was written by nobody, and its login would name another row
// (AccountContent lower-cases it), so the reader would mean a row it is not.
func canonicalLogin(s []byte) bool {
	return CheckLogin(string(s)) == nil && !bytes.ContainsFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
}

// PasswordContent returns the content of the text row holding a password
// hash of login (a PHC string such as "$argon2id$v=19$...").
func PasswordContent(login, hash string) []byte {
	return []byte(passwordPrefix + strings.ToLower(login) + "\n" + hash)
}

// ParsePasswordContent splits a password row's content.
func ParsePasswordContent(b []byte) (login, hash string, err error) {
	s, ok := bytes.CutPrefix(b, []byte(passwordPrefix))
	l, h, ok2 := bytes.Cut(s, []byte("\n"))
	if !ok || !ok2 || len(h) == 0 || !canonicalLogin(l) {
		return "", "", fmt.Errorf("%w: not a password row", ErrBadContent)
	}
	return string(l), string(h), nil
}

// PasswordColumn names the account column that links to the password row
// with key k; its value is the time the password was set (Unix ms).
func PasswordColumn(k Key) string { return LinkColumn(pwColPrefix, k) }

// MailboxColumn names the account column that links to the mailbox row
// with key k; its value is a MemberValue.
func MailboxColumn(k Key) string { return LinkColumn(mbxColPrefix, k) }

// MemberValue is the value of a membership column changed at t: the time
// in Unix milliseconds shifted left by one, with the low bit set for "is a
// member". A later change outranks an earlier one; at the same millisecond,
// membership wins.
func MemberValue(t time.Time, member bool) uint64 {
	v := uint64(max(t.UnixMilli(), 0)) << 1
	if member {
		v |= 1
	}
	return v
}

// IsMember reports whether a membership column value says "member".
func IsMember(v uint64) bool { return v&1 == 1 }

// CurrentPassword returns the key of the password row an account's state
// links to with the newest value; ok is false if it has none.
func CurrentPassword(st State) (k Key, ok bool) {
	var best uint64
	var bestName string
	for name, v := range st.Cols {
		pk, isLink := ParseLinkColumn(pwColPrefix, name)
		if !isLink {
			continue
		}
		if !ok || v > best || (v == best && name > bestName) {
			k, ok, best, bestName = pk, true, v, name
		}
	}
	return k, ok
}

// AccountMailboxes returns the keys of the mailboxes an account's state
// says belong to it, in a stable order (by column name).
func AccountMailboxes(st State) []Key {
	var keys []Key
	for _, name := range sortedNonZero(st.Cols) {
		if k, ok := ParseLinkColumn(mbxColPrefix, name); ok && IsMember(st.Cols[name]) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Header filters (SPEC §8): a mailbox row column HeaderFilterColumn(name),
// valued by MemberValue, says whether the header field name is dropped from
// the mailbox's mail on retrieval. Column names allow only a-z 0-9 . _ -,
// so a field name with other characters cannot be filtered.
const dropColPrefix = "drop."

// HeaderFilterColumn returns the mailbox column for dropping header field
// name, or an error if the name cannot be one.
func HeaderFilterColumn(name string) (string, error) {
	// ASCII only: strings.ToLower maps the Kelvin sign U+212A to 'k', so
	// a name CheckName must refuse became the filter of another field.
	col := []byte(dropColPrefix + name)
	lowerASCII(col[len(dropColPrefix):])
	if name == "" || strings.ContainsAny(name, ".:") || checkName(col) != nil {
		return "", fmt.Errorf("%w: header field name %q (letters, digits, '-' and '_' only, at most %d)", ErrBadName, name, 64-len(dropColPrefix))
	}
	return string(col), nil
}

// HeaderFilters returns the lower-case header field names a mailbox row's
// state says to drop, sorted.
func HeaderFilters(st State) []string {
	var names []string
	for _, col := range sortedNonZero(st.Cols) {
		if name, ok := strings.CutPrefix(col, dropColPrefix); ok && IsMember(st.Cols[col]) {
			names = append(names, name)
		}
	}
	return names
}
