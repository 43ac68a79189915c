package ctl

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/twinmx/twinmx/pkg/model"
)

// Folder names on disk. imapd's folder names are UTF-8 (decoded from
// modified UTF-7, RFC 3501 §5.1.3) with the hierarchy delimiter '/'
// (docs/imapd.md §4). Exports write them two ways:
//
//   - Maildir++ (a Maildir's folders, as Dovecot and Courier lay them
//     out): the folder "Work/2026" is the directory ".Work.2026" beside
//     the INBOX's cur/ new/ tmp/. Each level is in modified UTF-7, as
//     Dovecot stores names by default; a '.' inside a level (which would
//     be taken for the separator), a '\' and a leading '~' are written as
//     "\NN" in hex, as Dovecot's listescape plugin does with a '/' IMAP
//     separator. Import reads such trees back (and "\NN" in either case).
//   - mbox and .eml exports: one file or folder per level, named in UTF-8
//     (what a user reads in a file manager), with the bytes a file system
//     may refuse or misread written as "%NN" (fileFolderPath).

// imapDelim is imapd's hierarchy delimiter.
const imapDelim = "/"

// mutf7 is RFC 3501's modified base64: ',' for '/', no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeMUTF7 returns s (UTF-8) in modified UTF-7 (RFC 3501 §5.1.3).
func encodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune // characters waiting to be written in base64
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		raw := make([]byte, 0, 2*len(u))
		for _, c := range u {
			raw = append(raw, byte(c>>8), byte(c))
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}

// decodeMUTF7 returns the UTF-8 of s in modified UTF-7.
func decodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("byte %#02x in a modified UTF-7 name", c)
		case c != '&':
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errors.New("unterminated &... in a modified UTF-7 name")
		}
		enc := s[i+1 : i+1+end]
		i += 1 + end
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", fmt.Errorf("bad base64 %q in a modified UTF-7 name", enc)
		}
		u := make([]uint16, len(raw)/2)
		for j := range u {
			u[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError {
				return "", fmt.Errorf("bad UTF-16 in %q", enc)
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// maildirFolderDir returns the Maildir++ directory of folder name: "."
// and its levels in modified UTF-7, joined by '.', with '.', '\' and a
// leading '~' escaped as "\NN".
func maildirFolderDir(name string) string {
	levels := strings.Split(name, imapDelim)
	var b strings.Builder
	for i, l := range levels {
		b.WriteByte('.')
		enc := encodeMUTF7(l)
		for j := 0; j < len(enc); j++ {
			c := enc[j]
			if c == '.' || c == '\\' || c == '~' && i == 0 && j == 0 {
				fmt.Fprintf(&b, "\\%02x", c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// parseMaildirFolderDir returns the folder name of a Maildir++ directory
// name (maildirFolderDir's inverse); an error if dir is not one or its
// name is not one imapd would take (model.CheckFolderName).
func parseMaildirFolderDir(dir string) (string, error) {
	rest, ok := strings.CutPrefix(dir, ".")
	if !ok || rest == "" || rest == "." {
		return "", fmt.Errorf("%q is not a Maildir++ folder", dir)
	}
	levels := strings.Split(rest, ".")
	for i, l := range levels {
		var raw strings.Builder
		for j := 0; j < len(l); j++ {
			if l[j] == '\\' && j+3 <= len(l) {
				if v, err := strconv.ParseUint(l[j+1:j+3], 16, 8); err == nil {
					raw.WriteByte(byte(v))
					j += 2
					continue
				}
			}
			raw.WriteByte(l[j])
		}
		dec, err := decodeMUTF7(raw.String())
		if err != nil {
			return "", fmt.Errorf("folder %q: %w", dir, err)
		}
		levels[i] = dec
	}
	name := strings.Join(levels, imapDelim)
	if err := model.CheckFolderName(name); err != nil {
		return "", fmt.Errorf("folder %q: %w", dir, err)
	}
	return name, nil
}

// fileFolderPath returns the relative path of folder name in an mbox or
// .eml export: one path element per level, in UTF-8, with '%', '\', the
// bytes Windows refuses in names (: * ? " < > |), control characters and
// a leading '.' (never ".", "..", or a hidden file) written as "%NN".
func fileFolderPath(name string) string {
	levels := strings.Split(name, imapDelim)
	for i, l := range levels {
		var b strings.Builder
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c < 0x20 || c == 0x7f || strings.IndexByte(`%\:*?"<>|`, c) >= 0 || c == '.' && j == 0 {
				fmt.Fprintf(&b, "%%%02X", c)
			} else {
				b.WriteByte(c)
			}
		}
		levels[i] = b.String()
	}
	return strings.Join(levels, "/")
}
