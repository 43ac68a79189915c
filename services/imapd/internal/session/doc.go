// Package session is imapd's go-imap v2 backend: one Session per IMAP
// connection, a thin adapter that translates commands into Store calls
// (SPEC §8; docs/imapd.md).
//
// # Views and UIDs
//
// A selected mailbox is a view: the account's acknowledged, not deleted
// mail in UID order, where the UID is the receive row's local row number
// at this site (ascending in arrival order, never reused by this store).
// UIDVALIDITY hashes dbd's store incarnation with the folder name, so a
// client that fails over to the other site, or to a rebuilt store, sees a
// new UIDVALIDITY and resynchronises instead of trusting UIDs that name
// other mail there.
//
// The view changes only in Poll and Idle (never in the middle of a
// command): a watch on each of the account's mailboxes (dbd's watch by
// parent, push, no polling) marks the view dirty; the next Poll lists the
// mailboxes again and reports the difference (diff): EXPUNGE for rows
// gone, FETCH FLAGS for changed rows, EXISTS for rows above UIDNEXT. We do
// not use go-imap's MailboxTracker: each session compares dbd's truth with
// what it told its own client, so no cross-session bookkeeping can get
// inconsistent.
//
// # Concurrency
//
// go-imap calls a Session from its connection goroutine, except Idle,
// which runs on a second goroutine while the first waits for DONE; the
// two never touch the session at the same time. The watch goroutines
// touch only the watcher's atomic flag and channel. Every goroutine is
// owned by the session and stopped in Unselect/Close.
//
// # Read-only
//
// go-imap v2.0.0-beta.8 does not enforce EXAMINE: this package does
// (STORE, EXPUNGE, MOVE are refused; FETCH BODY[] does not set \Seen;
// CLOSE does not expunge).
package session
