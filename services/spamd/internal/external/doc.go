// Package external asks a spam engine the operator already runs for a
// second opinion (SPEC §7 "optional external engines"): SpamAssassin's
// spamd over the spamc protocol (SPAMD/1.x, CHECK and SYMBOLS commands, as
// in spamc/spamd's PROTOCOL file) and rspamd over its HTTP protocol
// (POST /checkv2, JSON answer).
//
// A Result is a verdict only when the engine gave a complete, well-formed
// answer. A refused connection, a timeout, an error reply, an answer that
// does not parse or that is larger than allowed, and a message the engine
// skipped are all errors: the caller must treat them as "no signal", never
// as ham or spam.
//
// # Limits
//
// Every check has a timeout (Config Timeout, default 10s) on top of the
// caller's ctx. Mail larger than MaxBytes (default 512 KiB, the spamc
// default) is not sent (ErrTooLarge): engines judge large mail poorly and
// slowly. The answer read is bounded by MaxResponseBytes (default 64 KiB).
//
// The engine clients hold no per-request state and are safe for
// concurrent use; each check uses its own connection (spamd) or the
// http.Client's pool (rspamd).
package external
