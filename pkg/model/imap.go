package model

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// IMAP folders, folder membership, placements and spam feedback
// (SPEC §8; docs/imapd.md §4). Every fact below is a status column that
// only rises, or an immutable row content, so both sites merge them with
// "higher dominates" and no coordination:
//
//   - A folder is identified by a FolderID, fixed at CREATE (system folders
//     have small fixed ids, user folders random ids with the top bit set).
//     Its anchor is the text row FolderContent(login, id); FolderKey is
//     that row's key, used as a parent key (it is never a mailbox row key:
//     keys are hashed with their table).
//   - An account's folder set is the text row FolderSetContent(login) with
//     a column FolderColumn(id) per user folder: MemberValue(t, exists).
//   - A folder's name is a text row FolderNameContent(id, name) linked from
//     the folder row by FolderNameColumn(nameKey) valued MemberValue(t,
//     true): the highest link is the current name (RENAME is a newer link).
//     Its subscription is the folder row's column ColSubscribed
//     (MemberValue; absent = subscribed).
//   - A receive row is in a folder per the column MemberColumn(id) on it
//     (MemberValue of the last move or copy; see Member). SMTP deliveries
//     are at home in INBOX; APPENDed mail (a receive row whose "mailbox" is
//     a FolderKey) is at home in that folder.
//   - A placement is a text row PlacementContent: "this receive row became
//     visible in this folder at this site (incarnation), with this
//     membership value". Its local row number is the mail's UID there.
//     ParentOf gives it the parent PlacementParent(folder, incarnation), so
//     dbd lists and watches one folder's placements of one site.
//   - Spam feedback is a text row FeedbackContent(receive, login) with the
//     column ColFeedback valued FeedbackValue; ParentOf gives every such row
//     the parent FeedbackParent, so spamd lists them without a scan.

// FolderID identifies one folder of an account for its whole life.
type FolderID uint64

// System folders. Their ids never change; user folders have bit 63 set.
const (
	FolderInbox  FolderID = 1
	FolderJunk   FolderID = 2
	FolderSent   FolderID = 3
	FolderTrash  FolderID = 4
	FolderDrafts FolderID = 5
)

// UserFolderID returns the id of a user folder drawn from r (random bits).
func UserFolderID(r uint64) FolderID { return FolderID(r | 1<<63) }

// System reports whether f is one of the fixed system folders.
func (f FolderID) System() bool { return f >= FolderInbox && f <= FolderDrafts }

// Valid reports whether f names a system or a user folder.
func (f FolderID) Valid() bool { return f.System() || f>>63 == 1 }

// String is the id in 16 hex digits (as in column names).
func (f FolderID) String() string {
	// By hand, not fmt: imapd names a folder's columns with it for every
	// mail of a listing.
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[f&0xf]
		f >>= 4
	}
	return string(b[:])
}

// FolderListName is the name a folder called name is listed under, given the
// names (lower case) listed before it, which it joins. Two user folders
// of one name (made at both sites before replication) are both kept:
// walked in id order, the first shows the name and a later one gets
// "~" and the last four digits of its id, so LIST never shows a name
// twice. imapd and dbctl's export list folders by this one rule.
func FolderListName(name string, id FolderID, taken map[string]bool) string {
	// A loop, not an if: the name with the suffix may be taken too (by a
	// folder named so, listed before), and LIST would show it twice.
	for taken[strings.ToLower(name)] {
		name += "~" + id.String()[12:]
	}
	taken[strings.ToLower(name)] = true
	return name
}

func parseFolderID(s string) (FolderID, bool) {
	if len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || s != fmt.Sprintf("%016x", v) || !FolderID(v).Valid() {
		return 0, false
	}
	return FolderID(v), true
}

const (
	folderPrefix     = "imap.folder\x00"
	folderSetPrefix  = "imap.folders\x00"
	folderNamePrefix = "imap.fname\x00"
	placementPrefix  = "imap.place\x00"
	feedbackPrefix   = "spam.feedback\x00"

	folderColPrefix     = "imap.f."
	folderNameColPrefix = "imap.fn."
	memberColPrefix     = "imap.in."
	appendRcvdColPrefix = "imap.rcvd."

	// MaxFolderNameLen bounds a folder name (UTF-8 bytes, as the client
	// sent it after decoding modified UTF-7).
	MaxFolderNameLen = 512
)

// Column names of the IMAP layout that are not links.
const (
	// ColSubscribed on a folder row: MemberValue of the last SUBSCRIBE or
	// UNSUBSCRIBE; absent means subscribed.
	ColSubscribed = "imap.sub"
	// ColAppendDate on an APPENDed receive row: its INTERNALDATE, Unix ms.
	ColAppendDate = "imap.date"
	// ColFeedback on a feedback row: FeedbackValue.
	ColFeedback = "spam.feedback"
)

// FolderContent returns the content of the anchor row of login's folder id.
func FolderContent(login string, id FolderID) []byte {
	b := make([]byte, 0, len(folderPrefix)+len(login)+9)
	b = append(b, folderPrefix...)
	b = append(b, strings.ToLower(login)...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, uint64(id))
}

// FolderKey returns the key of FolderContent(login, id): the parent of the
// folder's APPENDed receive rows and part of its placements.
func FolderKey(login string, id FolderID) Key { return KeyOf(Text, FolderContent(login, id)) }

// FolderSetContent returns the content of login's folder set row.
func FolderSetContent(login string) []byte {
	return []byte(folderSetPrefix + strings.ToLower(login))
}

// FolderColumn returns the folder set column of user folder id.
func FolderColumn(id FolderID) string { return folderColPrefix + id.String() }

// ParseFolderColumn returns the folder a FolderColumn names.
func ParseFolderColumn(name string) (FolderID, bool) {
	s, ok := strings.CutPrefix(name, folderColPrefix)
	if !ok {
		return 0, false
	}
	return parseFolderID(s)
}

// CheckFolderName reports whether name may name a user folder: 1 to
// MaxFolderNameLen bytes of UTF-8 without a wildcard of LIST ('*', '%'), NUL,
// CR or LF, and no empty level (no '/' first or last, no "//"). It is the
// rule imapd's CREATE and RENAME and dbctl apply when they write a name.
func CheckFolderName(name string) error {
	switch {
	case name == "" || len(name) > MaxFolderNameLen:
		return fmt.Errorf("%w: folder names are 1 to %d bytes", ErrBadName, MaxFolderNameLen)
	case !utf8.ValidString(name) || strings.ContainsAny(name, "*%\x00\r\n"):
		return fmt.Errorf("%w: folder name %q holds invalid UTF-8, '*', '%%' or a control character", ErrBadName, name)
	case name[0] == '/' || name[len(name)-1] == '/' || strings.Contains(name, "//"):
		return fmt.Errorf("%w: folder name %q has an empty level", ErrBadName, name)
	}
	return nil
}

// FolderNameContent returns the content of a folder name row.
func FolderNameContent(id FolderID, name string) []byte {
	b := make([]byte, 0, len(folderNamePrefix)+8+len(name))
	b = append(b, folderNamePrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	return append(b, name...)
}

// ParseFolderNameContent splits a folder name row's content. A name that
// CheckFolderName refuses is an error: every writer checks it, so such a
// row (replicated from the other site) is corrupt or hostile, and would
// list with line breaks, wildcards or empty levels.
func ParseFolderNameContent(b []byte) (FolderID, string, error) {
	rest, ok := bytes.CutPrefix(b, []byte(folderNamePrefix))
	if !ok || len(rest) < 9 || CheckFolderName(string(rest[8:])) != nil {
		return 0, "", fmt.Errorf("%w: not a folder name", ErrBadContent)
	}
	return FolderID(binary.BigEndian.Uint64(rest)), string(rest[8:]), nil
}

// FolderNameColumn returns the folder row column that links the name row k.
func FolderNameColumn(k Key) string { return LinkColumn(folderNameColPrefix, k) }

// CurrentFolderName returns the name row linked with the highest value
// (ties: the greater column name, so both sites agree).
func CurrentFolderName(st State) (k Key, ok bool) {
	var best uint64
	var bestName string
	for name, v := range st.Cols {
		nk, isLink := ParseLinkColumn(folderNameColPrefix, name)
		if isLink && (!ok || v > best || v == best && name > bestName) {
			k, ok, best, bestName = nk, true, v, name
		}
	}
	return k, ok
}

// NameValue returns the value for a new name link of a folder row whose
// state is st at time now: above every existing link, so it becomes the
// current name even against a clock that runs behind.
func NameValue(st State, now time.Time) uint64 {
	ms := uint64(max(now.UnixMilli(), 1))
	for name, v := range st.Cols {
		if _, isLink := ParseLinkColumn(folderNameColPrefix, name); isLink {
			ms = max(ms, v>>1+1)
		}
	}
	return valueAt(ms, true)
}

// valueAt returns the value for ms in MemberValue's layout (ms shifted left
// by one, the low bit set for member), with ms capped at the largest the
// layout holds. Callers compute ms, one above a stored value's, in uint64:
// in int64 a column at 1<<64-2 or above (a corrupt or hostile row) wrapped
// it to the lowest int64, and the value meant to be above the column fell
// to the clock's, far below it, instead of reaching 1<<64-1.
func valueAt(ms uint64, member bool) uint64 {
	v := min(ms, math.MaxUint64>>1) << 1
	if member {
		v |= 1
	}
	return v
}

// MemberColumn returns the receive column saying whether the mail is in
// folder id.
func MemberColumn(id FolderID) string { return memberColPrefix + id.String() }

// ParseMemberColumn returns the folder a MemberColumn names.
func ParseMemberColumn(name string) (FolderID, bool) {
	s, ok := strings.CutPrefix(name, memberColPrefix)
	if !ok {
		return 0, false
	}
	return parseFolderID(s)
}

// Member reports whether a receive row with state st, at home in folder
// home, is in folder id, and the membership value that put it there (gen):
// 0 while the row is at home and was never moved, else the MemberColumn
// value. A new move into the folder gives a new gen, hence a new
// placement and a new UID.
func Member(st State, home, id FolderID) (gen uint64, in bool) {
	return MemberTest(id)(st, home)
}

// MemberTest returns Member for folder id, with its column name made
// once: for a loop over every row of an account.
func MemberTest(id FolderID) func(st State, home FolderID) (gen uint64, in bool) {
	col := MemberColumn(id)
	return func(st State, home FolderID) (uint64, bool) {
		v := st.Col(col)
		if v == 0 {
			return 0, id == home
		}
		return v, v&1 == 1
	}
}

// MoveValue returns the value that records a move into (in) or out of
// folder id at now for a row with state st: above the current one.
func MoveValue(st State, id FolderID, now time.Time, in bool) uint64 {
	return valueAt(max(uint64(max(now.UnixMilli(), 1)), st.Col(MemberColumn(id))>>1+1), in)
}

// Folders returns every folder a receive row is in (home default included),
// among the ids in known.
func Folders(st State, home FolderID, known []FolderID) []FolderID {
	var out []FolderID
	for _, id := range known {
		if _, in := Member(st, home, id); in {
			out = append(out, id)
		}
	}
	return out
}

// AppendedReceivedColumn returns the column linking an APPENDed receive
// row to the received row of its Received fields (the mailbox role may not
// set smtpd's rcvd.* links, which mean "acknowledged delivery").
func AppendedReceivedColumn(k Key) string { return LinkColumn(appendRcvdColPrefix, k) }

// MailReceived returns the received row whose Received fields belong to
// the mail of a receive row with state st: the acknowledged delivery's
// (AcknowledgedReceived), or, for a row stored by IMAP APPEND, its own
// link (AppendedReceived). dbd's mail op uses it.
func MailReceived(st State) (Key, bool) {
	if k, ok := AcknowledgedReceived(st); ok {
		return k, true
	}
	return AppendedReceived(st)
}

// MailReceivedEncoded is MailReceived of the state st encodes (as
// State.AppendBinary writes it; the bytes after it are ignored), read
// without decoding it into maps: dbd finds the received row so for every
// mail op mails reads, where the decode allocated about 400 bytes a mail.
// Only the columns are checked; a state dbd read with SplitState's checks
// decodes without error.
func MailReceivedEncoded(st []byte) (k Key, ok bool, err error) {
	var app Key
	var hasApp bool
	var best uint64
	var bestName []byte
	err = eachColumn(st, func(name []byte, v uint64) {
		if rk, isLink := parseLinkColumn(receivedColPrefix, name); isLink {
			// As AcknowledgedReceived: the smallest value, then name.
			if !ok || v < best || (v == best && bytes.Compare(name, bestName) < 0) {
				k, ok, best, bestName = rk, true, v, name
			}
		} else if rk, isLink := parseLinkColumn(appendRcvdColPrefix, name); isLink && (!hasApp || bytes.Compare(rk[:], app[:]) < 0) {
			// As AppendedReceived: the smallest key (Key.String is hex,
			// so its order is the bytes').
			app, hasApp = rk, true
		}
	})
	if err != nil {
		return Key{}, false, err
	}
	if ok {
		return k, true, nil
	}
	return app, hasApp, nil
}

// AppendedReceived returns the received row an APPENDed receive row links.
func AppendedReceived(st State) (k Key, ok bool) {
	for name := range st.Cols {
		if rk, isLink := ParseLinkColumn(appendRcvdColPrefix, name); isLink && (!ok || rk.String() < k.String()) {
			k, ok = rk, true
		}
	}
	return k, ok
}

// Placement is a parsed placement row content.
type Placement struct {
	Incarnation uint64 // the dbd store that numbered it (its site)
	Folder      Key    // FolderKey
	Receive     Key    // the receive row placed
	Gen         uint64 // the Member gen that made it visible there
}

// placementSize is len(PlacementContent(...)).
const placementSize = len(placementPrefix) + 8 + 2*KeySize + 8

// PlacementContent returns the content of a placement row.
func PlacementContent(p Placement) []byte {
	b := make([]byte, 0, placementSize)
	b = append(b, placementPrefix...)
	b = binary.BigEndian.AppendUint64(b, p.Incarnation)
	b = append(b, p.Folder[:]...)
	b = append(b, p.Receive[:]...)
	return binary.BigEndian.AppendUint64(b, p.Gen)
}

// ParsePlacementContent parses a placement row content.
func ParsePlacementContent(b []byte) (Placement, error) {
	var p Placement
	if len(b) != placementSize || !bytes.HasPrefix(b, []byte(placementPrefix)) {
		return p, fmt.Errorf("%w: not a placement", ErrBadContent)
	}
	b = b[len(placementPrefix):]
	p.Incarnation = binary.BigEndian.Uint64(b)
	copy(p.Folder[:], b[8:])
	copy(p.Receive[:], b[8+KeySize:])
	p.Gen = binary.BigEndian.Uint64(b[8+2*KeySize:])
	return p, nil
}

// PlacementParent returns the parent key of the placements of folder made
// by the store incarnation inc: one site's placements of one folder. The
// other site's placements (replicated here) have another parent, so they
// are neither listed nor watched with ours.
func PlacementParent(folder Key, inc uint64) Key {
	b := make([]byte, 0, 24+KeySize+8)
	b = append(b, "twinmx-placements/1\x00"...)
	b = append(b, folder[:]...)
	b = binary.BigEndian.AppendUint64(b, inc)
	return KeyOf(Text, b)
}

// FeedbackContent returns the content of login's spam feedback row about
// the receive row.
func FeedbackContent(receive Key, login string) []byte {
	b := make([]byte, 0, len(feedbackPrefix)+KeySize+1+len(login))
	b = append(b, feedbackPrefix...)
	b = append(b, receive[:]...)
	b = append(b, 0)
	return append(b, strings.ToLower(login)...)
}

// ParseFeedbackContent splits a feedback row's content.
func ParseFeedbackContent(b []byte) (receive Key, login string, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(feedbackPrefix))
	if !ok || len(rest) < KeySize+2 || rest[KeySize] != 0 || CheckLogin(string(rest[KeySize+1:])) != nil {
		return receive, "", fmt.Errorf("%w: not a spam feedback", ErrBadContent)
	}
	copy(receive[:], rest)
	return receive, string(rest[KeySize+1:]), nil
}

// FeedbackParent is the parent (ParentOf) of every feedback row.
var FeedbackParent = KeyOf(Text, []byte("twinmx-spam-feedback/1"))

// FeedbackValue returns the ColFeedback value of a user's verdict at t:
// the latest verdict wins, and at the same millisecond spam wins.
func FeedbackValue(t time.Time, spam bool) uint64 {
	v := uint64(max(t.UnixMilli(), 1)) << 2
	if spam {
		return v | 2
	}
	return v | 1
}

// DecodeFeedback returns the verdict of a ColFeedback value; ok is false
// for 0 and malformed values.
func DecodeFeedback(v uint64) (spam, ok bool) {
	switch v & 3 {
	case 2:
		return true, v>>2 > 0
	case 1:
		return false, v>>2 > 0
	}
	return false, false
}

// textParent is ParentOf for text rows: placements and spam feedback.
func textParent(content []byte) (Key, bool) {
	switch {
	case len(content) == placementSize && bytes.HasPrefix(content, []byte(placementPrefix)):
		p, _ := ParsePlacementContent(content)
		return PlacementParent(p.Folder, p.Incarnation), true
	case bytes.HasPrefix(content, []byte(feedbackPrefix)):
		if _, _, err := ParseFeedbackContent(content); err == nil {
			return FeedbackParent, true
		}
	}
	return Key{}, false
}
