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
// many whole mails does not evict the listings' structures. Sizes are
// estimates of the heap an entry holds (the bytes, strings and a fixed
// charge per struct and map); an entry over an eighth of its budget is
// not kept. Eviction is least recently used. A caller may still hold an
// entry after it was evicted: entries are immutable and the garbage
// collector frees them when the last holder lets go, so the budget bounds
// what the cache keeps, not what FETCHes in flight hold.
//
// # Concurrency
//
// A Cache is safe for concurrent use; each kind has one mutex, held for a
// map operation and a list move, never during I/O or parsing. Entries are
// read-only once added: callers must not modify what they get.
//
// A nil *Cache is valid and caches nothing (the --cache-mb 0 setting).
package mailcache
