package ctl

import (
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

func TestMUTF7(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ascii", "Sent Items", "Sent Items"},
		{"ampersand", "R&D", "R&-D"},
		{"rfc3501 example", "~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"latin", "Entwürfe", "Entw&APw-rfe"},
		{"astral", "mail 😀", "mail &2D3eAA-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := encodeMUTF7(tc.in); got != tc.want {
				t.Fatalf("encodeMUTF7(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got, err := decodeMUTF7(tc.want); err != nil || got != tc.in {
				t.Fatalf("decodeMUTF7(%q) = %q, %v, want %q", tc.want, got, err, tc.in)
			}
		})
	}
	for _, bad := range []string{"&U,BTFw", "&A-", "a\x01", "é"} {
		if got, err := decodeMUTF7(bad); err == nil {
			t.Errorf("decodeMUTF7(%q) = %q, want an error", bad, got)
		}
	}
}

func TestMaildirFolderDir(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"Archive", ".Archive"},
		{"Work/2026", ".Work.2026"},
		{"Entwürfe/Alt", ".Entw&APw-rfe.Alt"},
		{"v1.2", ".v1\\2e2"},
		{"a\\b", ".a\\5cb"},
		{"~home/~x", ".\\7ehome.~x"},
		{"..", ".\\2e\\2e"},
	} {
		if got := maildirFolderDir(tc.name); got != tc.want {
			t.Errorf("maildirFolderDir(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if got, err := parseMaildirFolderDir(tc.want); err != nil || got != tc.name {
			t.Errorf("parseMaildirFolderDir(%q) = %q, %v, want %q", tc.want, got, err, tc.name)
		}
	}
	// Dovecot's escapes in upper case too.
	if got, err := parseMaildirFolderDir(".v1\\2E2"); err != nil || got != "v1.2" {
		t.Errorf("parseMaildirFolderDir(upper-case escape) = %q, %v", got, err)
	}
	for _, bad := range []string{"cur", ".", "..", ".a..b", ".a.", ".&Jjo", ".a*b"} {
		if got, err := parseMaildirFolderDir(bad); err == nil {
			t.Errorf("parseMaildirFolderDir(%q) = %q, want an error", bad, got)
		}
	}
}

func TestFileFolderPath(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"Archive", "Archive"},
		{"Work/2026", "Work/2026"},
		{"Entwürfe", "Entwürfe"},
		{"../x", "%2E./x"},
		{".hidden/a:b", "%2Ehidden/a%3Ab"},
		{"100%", "100%25"},
	} {
		if got := fileFolderPath(tc.name); got != tc.want {
			t.Errorf("fileFolderPath(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMaildirFlagsPerFolder(t *testing.T) {
	on := model.MemberValue(timeAt(1000), true)
	off := model.MemberValue(timeAt(2000), false)
	arch := model.UserFolderID(42)
	st := model.State{Cols: map[string]uint64{"imap.flag.seen": on, deletedColumn(arch): on}}
	if got := maildirFlags(st, model.FolderInbox); got != "S" {
		t.Errorf("INBOX flags = %q, want S (\\Deleted is Archive's only)", got)
	}
	if got := maildirFlags(st, arch); got != "ST" {
		t.Errorf("Archive flags = %q, want ST", got)
	}
	// The shared column of older rows counts, the later value wins.
	st.Cols["imap.flag.deleted"] = on
	st.Cols[deletedColumn(model.FolderInbox)] = off
	if got := maildirFlags(st, model.FolderInbox); got != "S" {
		t.Errorf("INBOX flags with a later clear = %q, want S", got)
	}
	if got := flagColumns("FST", arch); len(got) != 3 || got[2] != deletedColumn(arch) {
		t.Errorf("flagColumns(FST) = %v", got)
	}
}

func timeAt(ms int64) time.Time { return time.UnixMilli(ms) }
