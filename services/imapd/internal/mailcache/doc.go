// Package mailcache is imapd's bounded in-memory cache of what it derives
// from mails' bytes: the parsed structure a folder listing needs
// (ENVELOPE, BODYSTRUCTURE, RFC822.SIZE, the header section) and,
// optionally, the joined bytes of BODY[]. One Cache serves every session
// of an imapd process (docs/imapd.md §7).
//
// # Keys and why entries never go stale
//
// An entry is keyed by the rows the mail's bytes were joined from
// (mailbox.Origin: the mail row, which names the header and body rows,
// and the received row whose Received fields were put back) and by the
// header fields the mailbox drops. Every one of those rows is keyed by a
// hash of its content (SPEC §3), so the bytes under a key never change
// and an entry is never invalidated, only evicted. Flags, deletion and
// folder membership live in receive-row columns and placements: they are
// never cached here. The key is taken from the rows dbd answered with,
// not from the session's view: a receive row's link to its received row
// can change between the view and the read (an earlier acknowledgement
// replicating), and the bytes then hold the newer row's fields.
//
// # Bounds
//
// Each kind (parsed, body) has its own byte budget, so that a FETCH of
// many whole mails does not evict the listings' structures. Parsed
// entries are charged estimates of the heap they hold (the bytes,
// strings and a fixed charge per struct and map) and evicted least
// recently used first; a caller may still hold an entry after it was
// evicted: entries are immutable and the garbage collector frees them
// when the last holder lets go. Whole mails are copied into one arena of
// the body budget, reserved at start and filled as mails come, written
// as a circular log (ring.go): the oldest mails are dropped first, and
// readers get a copy, since the arena's memory is reused. An entry over
// an eighth of its budget is not kept, of either kind.
//
// # Concurrency
//
// A Cache is safe for concurrent use. The parsed kind has one mutex,
// held for a map operation and a list move; the arena of whole mails a
// read-write lock, held for a map operation and a copy in or out of it;
// neither during I/O or parsing. Parsed entries are read-only once
// added: callers must not modify what they get.
//
// A nil *Cache is valid and caches nothing (the --cache-mb 0 setting).
package mailcache
