// Package flags maps IMAP message flags to receive-row status columns and
// back (SPEC §3, §8; docs/imapd.md "Flags").
//
// Every flag is one column on the mail's receive row whose value is
// model.MemberValue(t, set): the time of the last change in Unix
// milliseconds shifted left by one, with the low bit "set". Columns only
// rise and merge by maximum, so the latest change wins on both sites: a
// flag set at site A shows at site B after replication, and a flag cleared
// later at B stays cleared. At the same millisecond "set" wins.
//
// Column names:
//
//	\Seen \Answered \Flagged \Draft           imap.flag.seen, ... (fixed)
//	\Deleted in folder F                       imap.flag.deleted.<F's id, 16 hex>
//	well-known keywords ($Forwarded, $Junk ...) imap.kw._forwarded, ... (fixed)
//	a keyword of a-z 0-9 . _ - only, ≤ 56 bytes imap.kw.<keyword>
//	any other keyword                           imap.kh.<base32 of a text row key>
//
// \Deleted is a column per folder, unlike every other flag: a mail COPYed
// to a second folder is one receive row in both (flags shared), and a
// shared \Deleted set to delete one copy made the next EXPUNGE of the
// other folder remove the other copy too. Rows written before keep the
// shared column imap.flag.deleted; it counts in every folder, and the
// later of it and a folder's own column wins (Current).
//
// The last form names a text row whose content is KeywordContent(keyword)
// (the keyword in lower case): column names allow only [a-z0-9._-], so the
// name is kept in the row and the column links to it (model.LinkColumn).
// Keywords compare without regard to case (RFC 9051 §2.3.2); a keyword
// of the last form is shown in lower case, but for registered keywords
// ($MailFlagBit0 ...), which keep their registered spelling.
//
// A receive row has at most model.MaxColumns columns and none ever goes
// away, so what a client can add to one is bounded: keywords
// (MaxKeywords) and the folders a mail goes into, with their \Deleted
// (MaxFolders, whose doc has the row's budget).
//
// The package is pure: no I/O.
package flags

import (
	"iter"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/twinmx/twinmx/pkg/model"
)

// Column prefixes. The mailbox role may set every receive column under
// "imap." (docs/roles.md §2.2).
const (
	systemPrefix  = "imap.flag."
	keywordPrefix = "imap.kw."
	hashedPrefix  = "imap.kh."
)

// system maps the IMAP system flags (lower case) to their column; the
// \Deleted one is the shared column of rows written before \Deleted
// became per folder (DeletedColumn).
var system = map[string]string{
	`\seen`:     systemPrefix + "seen",
	`\answered`: systemPrefix + "answered",
	`\flagged`:  systemPrefix + "flagged",
	`\draft`:    systemPrefix + "draft",
	`\deleted`:  sharedDeleted,
}

const (
	sharedDeleted = systemPrefix + "deleted"
	deletedPrefix = sharedDeleted + "."
)

// DeletedColumn is \Deleted's column in folder f.
func DeletedColumn(f model.FolderID) string { return deletedPrefix + f.String() }

// Current returns the value that decides col's flag: the column's own,
// and for a folder's \Deleted the later of it and the shared column of
// older rows.
func Current(cols map[string]uint64, col string) uint64 {
	v := cols[col]
	if strings.HasPrefix(col, deletedPrefix) {
		v = max(v, cols[sharedDeleted])
	}
	return v
}

// SetIn returns the flag columns that are set for a mail shown in folder
// f: the shared \Deleted of older rows as f's own column, no other
// folder's \Deleted.
func SetIn(cols map[string]uint64, f model.FolderID) []string {
	var out []string
	del := DeletedColumn(f)
	for c := range cols {
		if c == sharedDeleted || c == del {
			continue
		}
		if IsFlagColumn(c) && !strings.HasPrefix(c, deletedPrefix) && Set(cols[c]) {
			out = append(out, c)
		}
	}
	if Set(Current(cols, del)) {
		out = append(out, del)
	}
	return out
}

// MaxKeywords bounds the keyword columns (set or cleared: a column never
// goes away) of one mail. A receive row has at most model.MaxColumns
// columns, shared with its memberships and per-folder \Deleted, and with
// what other services write on it (see "Row budget" at MaxFolders): a
// row filled with keywords could no longer be expunged, moved, marked
// deleted by pop3d or backed up. Mail clients use a few (Thunderbird's
// tags, $Junk, $Forwarded …).
const MaxKeywords = 100

// MaxFolders bounds the folders a mail has columns for over its life:
// its membership columns (model.MemberColumn, "in" or "out": a column
// never goes away) and its home (INBOX for an SMTP delivery, the APPEND
// folder), which has none until the mail leaves it. A COPY or MOVE into
// a folder beyond it is refused. A folder's \Deleted column is only
// ever written for a folder the mail is in (STORE in the selected
// folder, a COPY or MOVE into the target, an APPEND into the home), so
// MaxFolders bounds those too.
//
// # Row budget
//
// The receive row's model.MaxColumns (256), at the worst:
//
//	keywords                                     100  MaxKeywords
//	memberships, \Deleted per folder             100  2 × MaxFolders
//	\Seen \Answered \Flagged \Draft, shared \Deleted,
//	imap.date, imap.rcvd.<link>                    7
//	other services (TestRowBudget lists them)     29
//
// 236, 20 to spare for what the other services add over time (a
// delivery, a verdict or an SMS target more). A row filled up refuses
// every new column: the mail could no longer take a flag it never had,
// be expunged (a membership "out") or be moved.
const MaxFolders = 50

// IsKeywordColumn reports whether col is a keyword's column.
func IsKeywordColumn(col string) bool {
	return strings.HasPrefix(col, keywordPrefix) || strings.HasPrefix(col, hashedPrefix)
}

// KeywordColumns counts the keyword columns of cols and of added that
// cols lacks: how many a mail would hold once added were written.
func KeywordColumns(cols map[string]uint64, added iter.Seq[string]) int {
	n := 0
	for c := range cols {
		if IsKeywordColumn(c) {
			n++
		}
	}
	for c := range added {
		if _, ok := cols[c]; !ok && IsKeywordColumn(c) {
			n++
		}
	}
	return n
}

// TooManyKeywords reports whether writing the flag columns added on a
// mail whose row has cols would give it a keyword column it lacks beyond
// MaxKeywords. Writing only columns the mail has (its keywords, system
// flags) is never too many, even on a row over the bound (a keyword
// flood from before it): such a mail keeps the keywords it has.
func TooManyKeywords(cols map[string]uint64, added iter.Seq[string]) bool {
	n := KeywordColumns(cols, added)
	return n > MaxKeywords && n > KeywordColumns(cols, noColumns)
}

// noColumns is the empty sequence of columns.
func noColumns(func(string) bool) {}

// memberPrefix starts model.MemberColumn's names (TestFolderColumns
// checks it). A column under it counts even if it names no folder: it
// takes a place in the row all the same.
const memberPrefix = "imap.in."

// FolderColumns counts the folders a mail at home in home has columns
// for, or may get one for without a COPY or MOVE into it: those of its
// membership columns in cols, and home.
func FolderColumns(cols map[string]uint64, home model.FolderID) int {
	n := 0
	for c := range cols {
		if strings.HasPrefix(c, memberPrefix) {
			n++
		}
	}
	if _, ok := cols[model.MemberColumn(home)]; !ok {
		n++
	}
	return n
}

// TooManyFolders reports whether a COPY or MOVE into dst of a mail at
// home in home whose row has cols would give it a folder beyond
// MaxFolders (FolderColumns). A folder it has a column for, and its
// home, never are: a mail over the bound still goes back where it was.
func TooManyFolders(cols map[string]uint64, home, dst model.FolderID) bool {
	if _, ok := cols[model.MemberColumn(dst)]; ok || dst == home {
		return false
	}
	return FolderColumns(cols, home) >= MaxFolders
}

// wellKnown maps widely used keywords (lower case) to their spelling; they
// keep it when shown.
var wellKnown = map[string]imap.Flag{
	"$forwarded": imap.FlagForwarded,
	"$mdnsent":   imap.FlagMDNSent,
	"$junk":      imap.FlagJunk,
	"$notjunk":   imap.FlagNotJunk,
	"$phishing":  imap.FlagPhishing,
	"$important": imap.FlagImportant,
	"junk":       "Junk",
	"nonjunk":    "NonJunk",
}

// spelling maps registered keywords (the IANA "IMAP and JMAP Keywords"
// registry: RFC 5550, RFC 9979, Apple's flag colours) that are stored in
// the hashed form, in lower case, to their registered spelling, so a
// client that compares keywords by their bytes (Apple Mail's
// $MailFlagBit0) finds its own. Only the display changes: the column of
// such a keyword is what it was before, so flags set earlier still show.
var spelling = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"$SubmitPending", "$Submitted",
		"$MailFlagBit0", "$MailFlagBit1", "$MailFlagBit2",
		"$Notify", "$Muted", "$Followed", "$Memo", "$HasMemo",
		"$HasAttachment", "$HasNoAttachment", "$AutoSent",
		"$CanUnsubscribe", "$Unsubscribed", "$Imported", "$IsTrusted",
		"$MaskedEmail", "$New",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// Junk reports whether flag is a keyword mail clients set to say "this
// is spam" ($Junk, and Thunderbird's older Junk) or "this is not spam"
// ($NotJunk, NonJunk); ok is false for every other flag.
func Junk(flag imap.Flag) (spam, ok bool) {
	switch strings.ToLower(string(flag)) {
	case "$junk", "junk":
		return true, true
	case "$notjunk", "nonjunk":
		return false, true
	}
	return false, false
}

// Permanent lists the flags every mailbox offers (FLAGS, PERMANENTFLAGS
// adds \*).
var Permanent = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// permanentCols are the columns of Permanent, in its order: Of runs for
// every message of a folder on each change, so they are looked up once.
var permanentCols = func() []string {
	cols := make([]string, len(Permanent))
	for i, f := range Permanent {
		cols[i] = system[strings.ToLower(string(f))]
	}
	return cols
}()

// Column returns the receive column for flag on a mail shown in folder
// f. For a keyword of the hashed
// form, text is the content of the text row that must exist so the flag
// can be shown (KeywordContent); it is nil otherwise. ok is false for a
// flag that cannot be stored: \Recent, \* and other unknown system flags.
func Column(flag imap.Flag, f model.FolderID) (col string, text []byte, ok bool) {
	lower := strings.ToLower(string(flag))
	if lower == `\deleted` {
		return DeletedColumn(f), nil, true
	}
	if strings.HasPrefix(lower, `\`) {
		col, ok = system[lower]
		return col, nil, ok
	}
	if lower == "" {
		return "", nil, false
	}
	if _, known := wellKnown[lower]; known {
		if d, ok := strings.CutPrefix(lower, "$"); ok {
			return keywordPrefix + "_" + d, nil, true
		}
		return keywordPrefix + lower, nil, true
	}
	if plain(lower) {
		return keywordPrefix + lower, nil, true
	}
	text = KeywordContent(lower)
	return model.LinkColumn(hashedPrefix, model.KeyOf(model.Text, text)), text, true
}

// plain reports whether a lower-case keyword can be its own column name.
// A keyword starting with '$' or '_' is never plain: the well-known "$x"
// keywords are stored as "_x", so "$x", "_x" and "x" stay apart.
func plain(k string) bool {
	if len(k) > model.MaxNameLen-len(keywordPrefix) || strings.HasPrefix(k, "_") {
		return false
	}
	return model.CheckName(k) == nil
}

// keywordTag starts a keyword text row's content.
const keywordTag = "imap.keyword\x00"

// KeywordContent is the content of the text row that names a hashed
// keyword column: "imap.keyword", a NUL, then the keyword in lower case.
func KeywordContent(lowerKeyword string) []byte { return []byte(keywordTag + lowerKeyword) }

// ParseKeywordContent returns the keyword a text row's content names.
func ParseKeywordContent(b []byte) (string, bool) {
	s, ok := strings.CutPrefix(string(b), keywordTag)
	return s, ok && s != ""
}

// Set reports whether a flag column value says "set".
func Set(v uint64) bool { return model.IsMember(v) }

// Value is the column value of a change at unix milliseconds ms.
func Value(ms int64, set bool) uint64 {
	v := uint64(max(ms, 0)) << 1
	if set {
		v |= 1
	}
	return v
}

// Of returns the flags a receive row's columns say are set for the mail
// shown in folder. resolve looks
// up the keyword of a hashed column's text row; nil skips such flags. Flags
// come in a stable order: system flags, then keywords by column name.
func Of(cols map[string]uint64, folder model.FolderID, resolve func(model.Key) (string, bool)) []imap.Flag {
	var out []imap.Flag
	for i, f := range Permanent {
		v := cols[permanentCols[i]]
		if f == imap.FlagDeleted {
			v = Current(cols, DeletedColumn(folder))
		}
		if Set(v) {
			out = append(out, f)
		}
	}
	var kws []string
	for name, v := range cols {
		if Set(v) && (strings.HasPrefix(name, keywordPrefix) || strings.HasPrefix(name, hashedPrefix)) {
			kws = append(kws, name)
		}
	}
	sort.Strings(kws)
	for _, name := range kws {
		if k, ok := strings.CutPrefix(name, keywordPrefix); ok {
			if d, ok := strings.CutPrefix(k, "_"); ok {
				if f, known := wellKnown["$"+d]; known {
					out = append(out, f)
				}
			} else if f, known := wellKnown[k]; known {
				out = append(out, f)
			} else {
				out = append(out, imap.Flag(k))
			}
			continue
		}
		key, ok := model.ParseLinkColumn(hashedPrefix, name)
		if !ok || resolve == nil {
			continue
		}
		if kw, ok := resolve(key); ok {
			if sp, registered := spelling[kw]; registered {
				kw = sp
			}
			out = append(out, imap.Flag(kw))
		}
	}
	return out
}

// Has reports whether flag is set in cols for the mail shown in folder f
// (hashed keywords included).
func Has(cols map[string]uint64, flag imap.Flag, f model.FolderID) bool {
	col, _, ok := Column(flag, f)
	return ok && Set(Current(cols, col))
}

// IsFlagColumn reports whether a column holds a flag.
func IsFlagColumn(name string) bool {
	return strings.HasPrefix(name, systemPrefix) || strings.HasPrefix(name, keywordPrefix) || strings.HasPrefix(name, hashedPrefix)
}
