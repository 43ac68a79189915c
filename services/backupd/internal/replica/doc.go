// Package replica is backupd's replication engine (SPEC §6): it keeps two or
// more dbds converged and marks what is stored on enough sites as backed up.
//
// # Pumps
//
// For every ordered pair of sites (src, dst) a pump streams src's changes
// (dbd's "changes since cursor, follow": pushed as dbd commits them, never
// polled) and merges them into dst in batches (at most Config.MaxBatchRows
// rows and Config.MaxBatchBytes of content per merge). Every merge carries
// the cursor "repl.<src>-to-<dst>" (CursorName), which dbd raises in the
// same atomic transaction as the rows, so the cursor names exactly what dst
// holds, whatever crashes when. A new session (after a restart, a dbd crash,
// a cut link) reads the cursor from dst and streams from there.
//
// Merges are idempotent and commutative (columns and per-site counts take
// the maximum; SPEC §3), and a merge that changes nothing writes no change,
// so the change a pump writes into dst travels back to src once and stops
// there. With N sites the mesh has N·(N-1) pumps; a row reaches every site
// directly from its origin, and again (as a no-op) through every other site.
//
// # Cursor invariant
//
// The cursor stored for a pump is the highest stamp s such that every
// change of src up to s is merged into dst AND every receive row among
// them has been settled: marked in its own merge (see markInBatch), or by
// the marker (marked, or found marked). The
// second half keeps the backed-up mark crash-safe: rows whose mark is not
// settled are streamed again after a restart. Re-merging them is a no-op.
//
// # Backed-up mark
//
// See marker: a mail is backed up when its receive, mail, header and body
// rows are durable on at least Config.MinCopies sites (default 2: for two
// sites, both). A mail whose four rows come in one merged batch gets the
// mark (model.ColBackedUp = model.FlagSet) inside that merge, at the
// destination; otherwise the marker sets it on all four rows at every site
// that holds them. Other sites get it by replication.
//
// # Memory
//
// A pump holds at most Config.MaxQueuedBytes of rows read but not merged
// (content plus rowOverhead a row), plus a few rows in the client's
// stream buffer, plus the encoded merge (a second copy of the batch being
// sent). The marker never reads a body.
//
// # Liveness
//
// A stalled link shows no error by itself, so each pump's heartbeat asks
// both dbds every Config.Heartbeat; a miss of Config.HeartbeatTimeout ends
// the session, and a new session dials new connections.
package replica
