// Package session is imapd's go-imap v2 backend: one Session per IMAP
// connection, a thin adapter that translates commands into Store calls
// (SPEC §8; docs/imapd.md).
//
// # Views and UIDs
//
// A selected folder is a view: the account's mail that is in the folder
// (pkg/model/imap.go: SMTP deliveries, acknowledged and not deleted, at
// home in INBOX; APPENDed mail at home in its folder; moves and copies by
// membership columns), in UID order. The UID is the local row number of
// the mail's placement in the folder at this site, created when imapd
// first sees it there (reconcile), so UIDs rise in the order mail becomes
// visible here and are never reused. UIDVALIDITY is a per-incarnation
// offset plus the row number of the folder's validity marker at this site
// (store.Validity): a folder made later here gets a greater value (RFC
// 9051 §2.3.1.1), and a client that fails over to the other site, or to
// a rebuilt store, sees a new UIDVALIDITY and resynchronises instead of
// trusting UIDs that name other mail there.
//
// The view changes only in Poll and Idle (never in the middle of a
// command): a watch on each of the account's mailboxes and folder keys
// (dbd's watch by parent, push, no polling) hands the changed rows to the
// session and marks the view dirty (a watch on the account's folder set
// row adds the keys of folders created since SELECT); the next Poll merges them into the
// rows the session keeps (rowCache; everything is listed again when that
// copy cannot be trusted), rebuilds the view and reports the difference
// (diff): EXPUNGE for mail gone, FETCH FLAGS for changed rows, EXISTS for
// UIDs above UIDNEXT. We do not use go-imap's MailboxTracker: each session
// compares dbd's rows with what it told its own client, so no
// cross-session bookkeeping can get inconsistent.
//
// # Concurrency
//
// go-imap calls a Session from its connection goroutine, except Idle,
// which runs on a second goroutine while the first waits for DONE; the
// two never touch the session at the same time. The watch goroutines
// touch only the watcher's flag, channel and change list (under its lock). A FETCH's prefetch
// goroutines read copies of the messages and the Store only, and end
// before Fetch returns. Every goroutine is owned by the session and
// stopped in Unselect/Close (or at the end of its command). The mail
// cache (Config.Cache, package mailcache) is shared by every session of
// the Backend; its entries are read-only.
//
// # Read-only
//
// go-imap v2.0.0-beta.8 does not enforce EXAMINE: this package does
// (STORE, EXPUNGE, MOVE are refused; FETCH BODY[] does not set \Seen;
// CLOSE does not expunge).
package session
