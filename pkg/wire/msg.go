package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/twinmx/twinmx/pkg/model"
)

// Message codec. A message is the data of one or more frames with the same
// request id, the last without FlagMore. A request is one message; an answer
// is one message, or for streaming operations (watch, changes, dump) a
// sequence of event messages closed by an end or error message. The layouts
// are in docs/wire.md §5; all integers are unsigned LEB128 varints unless the
// layout says otherwise.

// Op is the operation of a request. Its value is part of the protocol.
type Op uint8

// Operations (SPEC §4).
const (
	OpPing         Op = 1  // no arguments; answers an empty result
	OpFindOrInsert Op = 2  // table, content -> rowno, new
	OpFind         Op = 3  // table, ref -> row (with content) or not-found
	OpSet          Op = 4  // table, ref, column, value -> rowno or not-found
	OpIncrement    Op = 5  // table, ref, counter, delta -> rowno or not-found
	OpBatch        Op = 6  // sub-requests (find-or-insert, set, increment), atomic
	OpWatch        Op = 7  // table, keys, initial -> stream of rows
	OpChanges      Op = 8  // cursor, follow [, exclude] -> stream of rows with content
	OpMerge        Op = 9  // rows, cursor name, cursor value -> per-row result
	OpStatus       Op = 10 // -> named figures
	OpDump         Op = 11 // -> stream of rows with content digest, sorted
	OpCursor       Op = 12 // name -> stored cursor value
	OpScan         Op = 13 // table, limit[, before] -> stream of the newest rows by row number (below before)
	OpList         Op = 14 // table, parent, after, limit -> stream of the parent's rows by row number
	OpCheckpoint   Op = 15 // name -> path of a consistent copy of the store on dbd's host
	OpMail         Op = 16 // receive key -> stream of the rows that make the mail, with content
	OpMails        Op = 17 // receive keys -> OpMail's rows of each mail in turn, from one snapshot
	OpArm          Op = 18 // timeout, conditions, sub-requests -> fired and per-request results (see Request.Conds)
)

var opNames = map[Op]string{
	OpPing: "ping", OpFindOrInsert: "find-or-insert", OpFind: "find", OpSet: "set",
	OpIncrement: "increment", OpBatch: "batch", OpWatch: "watch", OpChanges: "changes",
	OpMerge: "merge", OpStatus: "status", OpDump: "dump", OpCursor: "cursor", OpScan: "scan",
	OpList: "list", OpCheckpoint: "checkpoint", OpMail: "mail", OpMails: "mails", OpArm: "arm",
}

// String returns the operation's name, used in logs and metric labels.
func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return "unknown"
}

// Valid reports whether o is a known operation.
func (o Op) Valid() bool { _, ok := opNames[o]; return ok }

// Bounds checked by the decoder, so a request never makes the peer allocate
// more than its own size plus small constants.
const (
	MaxBatchOps   = 4096 // sub-requests in one batch
	MaxWatchKeys  = 4096 // keys in one watch filter
	MaxMergeRows  = 4096 // rows in one merge
	MaxStatusVals = 4096 // figures in one status answer
	MaxMailsKeys  = 64   // mails in one mails request
	MaxPackedRows = 4096 // rows in one rows answer
	MaxArmConds   = 256  // conditions of one arm request
)

// MailRows is the most rows an answer to op mail or mails carries for one
// mail: its receive, mail, header, body and received rows.
const MailRows = 5

// Flags of a mails request (docs/wire.md §5.4), in one byte after the
// byte budget. A dbd older than a flag refuses the request as
// bad-request ("unknown flags", or "trailing bytes" before any flag), and
// the client asks again without it.
const (
	// MailsPacked: answer in rows messages (KindRows), several rows a
	// message, not one event a row.
	MailsPacked byte = 0x01
	// MailsNoBody: send each mail's body row without its content, with
	// its size (Row.Size), everything else as without the flag: a
	// reader of headers and sizes (a folder listing) does not make dbd
	// read and send the bodies, most of a mail's bytes.
	MailsNoBody byte = 0x02
)

// ListPacked is the only flag a list request may carry (docs/wire.md
// §5.4): answer in rows messages, as MailsPacked does for mails. A
// listing of 10,000 receive rows is then some 30 frames, not 10,000.
const ListPacked byte = 0x01

// ErrMalformed is returned by the message decoders for bytes that are not a
// valid message. Use errors.Is(err, ErrMalformed).
var ErrMalformed = errors.New("wire: malformed message")

// Ref names a row either by its content or by its key.
type Ref struct {
	ByKey   bool
	Key     model.Key // when ByKey
	Content []byte    // when !ByKey
}

// KeyIn returns the row key that r names in table t.
func (r Ref) KeyIn(t model.Table) model.Key {
	if r.ByKey {
		return r.Key
	}
	return model.KeyOf(t, r.Content)
}

// Request is one decoded request. Which fields are used depends on Op.
type Request struct {
	Op      Op
	Table   model.Table // find-or-insert, find, set, increment, watch, scan, list
	Ref     Ref         // find, set, increment; mail: the receive row, by key
	Content []byte      // find-or-insert
	Name    string      // set: column; increment: counter; merge and cursor: cursor name; changes: exclude (see OpChanges)
	Value   uint64      // set: value; increment: delta; changes: cursor; merge: cursor value; scan, list: limit; mails: byte budget (0: none)
	After   uint64      // list: only rows with a higher local row number
	// Before, for scan, pages it: only rows whose local row number is
	// below it (the smallest RowNo of the previous page); 0 means no
	// bound. A dbd older than it refuses it (bad-request, trailing bytes).
	Before uint64
	// Parent selects rows by the key their content refers to (see
	// model.ParentOf): required for list; optional for watch, where it
	// needs an empty Keys and nil means "no parent filter".
	Parent *model.Key
	Flag   bool        // watch: send current rows first; changes: keep following; find: without content; mails, list: packed rows (MailsPacked, ListPacked)
	NoBody bool        // mails: body rows without content (MailsNoBody)
	Batch  []Request   // batch: sub-requests
	Keys   []model.Key // watch: only these rows (empty = whole table)
	Rows   []Row       // merge
	// Cond, for watch, narrows the events to rows whose new state meets
	// it; nil: every change (see WatchCond).
	Cond *WatchCond
	// Conds, for arm: the sub-requests in Batch are applied, atomically,
	// in the commit that makes every condition true (or at once if they
	// are), within Value milliseconds; otherwise not at all.
	Conds []ArmCond
}

// ArmCond is one condition of an arm request: row Key of Table exists and
// its column Name has a value v != 0 with v&Mask == Want.
type ArmCond struct {
	Table      model.Table
	Key        model.Key
	Name       string
	Mask, Want uint64
}

// WatchCond is a watch's condition on the state of a changed row: an
// event is sent only if column With is set (non-zero) and column Without
// is not. An empty name makes no condition; at least one must be given.
// A watcher that needs only some changes saves their encryption and
// hand-over on both sides: smtpd waits for verdicts (With verdict,
// Without ack), a filter for new rows (Without verdict).
type WatchCond struct {
	With, Without string
}

// watchCondFlag marks, in a watch request's initial byte, that a
// condition follows the keys.
const watchCondFlag = 0x02

// Row is a row as it travels on the wire. Content is present only where the
// operation sends it (HasContent); Digest (SHA-256 of the content) only in
// dumps.
type Row struct {
	Table model.Table
	Key   model.Key
	RowNo uint64 // local to the answering site
	Stamp uint64 // change stamp: set in changes streams only (SPEC §3: hidden from other clients)
	State model.State
	// EncodedState, when not nil, is the state already encoded
	// (model.State.AppendBinary's bytes, as dbd stores them):
	// AppendRowHeader writes it instead of State. Decoders set State.
	EncodedState []byte
	Size         uint64 // content length in bytes
	HasContent   bool
	Content      []byte
	HasDigest    bool
	Digest       [32]byte
}

// Kind is the first byte of an answer message.
type Kind uint8

// Answer kinds.
const (
	KindResult   Kind = 0 // the answer to a one-shot request
	KindNotFound Kind = 1 // the row named by the request does not exist
	KindError    Kind = 2 // the request failed; code and text follow
	KindEvent    Kind = 3 // one item of a stream
	KindEnd      Kind = 4 // a stream ended normally
	KindRows     Kind = 5 // several rows of a stream: only to a mails or list request with MailsPacked or ListPacked
)

// Code classifies an error answer.
type Code uint8

// Error codes. Clients branch on them; the text is for humans.
const (
	CodeBadRequest  Code = 1 // malformed or invalid request (unknown table, bad name, ...)
	CodeForbidden   Code = 2 // the client's role does not allow the operation
	CodeTooLarge    Code = 3 // the request exceeds a size bound
	CodeUnavailable Code = 4 // dbd cannot serve now (shutting down, storage failed); retry elsewhere or later
	CodeInternal    Code = 5 // a bug; logged by dbd
	CodeBusy        Code = 6 // too many requests in flight on this connection
	// CodeNoSpace: dbd's disk is full. Its store failed on a write that
	// ran out of space and acknowledges nothing until dbd restarts with
	// free space; retry later or at the other site. A client that does
	// not know the code takes it as a plain failure (not temporary).
	CodeNoSpace Code = 7
)

// ErrNoSpace matches (errors.Is) an *Error with CodeNoSpace: dbd could not
// store the request because its disk is full. smtpd answers 452 4.3.1 for
// it.
var ErrNoSpace = errors.New("wire: dbd's disk is full")

var codeNames = map[Code]string{
	CodeBadRequest: "bad-request", CodeForbidden: "forbidden", CodeTooLarge: "too-large",
	CodeUnavailable: "unavailable", CodeInternal: "internal", CodeBusy: "busy",
	CodeNoSpace: "no-space",
}

// String returns the code's name, used in metric labels.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "unknown"
}

// Error is an error answer from dbd.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("dbd: %s: %s", e.Code, e.Msg) }

// Temporary reports whether the same request may succeed later.
func (e *Error) Temporary() bool {
	return e.Code == CodeUnavailable || e.Code == CodeBusy || e.Code == CodeNoSpace
}

// Is lets callers branch on a code with errors.Is: an error answer with
// CodeNoSpace is ErrNoSpace.
func (e *Error) Is(target error) bool { return target == ErrNoSpace && e.Code == CodeNoSpace }

// Result is a decoded one-shot answer. Which fields are set depends on the
// operation asked.
type Result struct {
	NotFound bool
	RowNo    uint64   // find-or-insert, set, increment, merge (per row)
	New      bool     // find-or-insert: the row did not exist; merge: state changed
	Row      *Row     // find
	Rows     []Row    // a rows answer (KindRows): one or more rows of a stream
	Results  []Result // batch, merge: one per sub-request / row
	Value    uint64   // cursor
	Status   []Figure // status
	Path     string   // checkpoint: where dbd wrote it, on its own host
	Fired    bool     // arm: the sub-requests were applied (Results); false: the time ran out first
}

// Figure is one named value of a status answer.
type Figure struct {
	Name  string
	Value string
}

// ---- encoding -------------------------------------------------------------

// AppendRequest appends the encoding of r to b.
func AppendRequest(b []byte, r *Request) ([]byte, error) {
	b = append(b, byte(r.Op))
	switch r.Op {
	case OpPing, OpStatus, OpDump:
	case OpFindOrInsert:
		b = append(b, byte(r.Table))
		b = appendBytes(b, r.Content)
	case OpFind:
		b = append(b, byte(r.Table))
		b = appendRef(b, r.Ref)
		if r.Flag {
			// Optional: absent means "with content".
			b = append(b, 1)
		}
	case OpSet, OpIncrement:
		b = append(b, byte(r.Table))
		b = appendRef(b, r.Ref)
		b = appendString(b, r.Name)
		b = binary.AppendUvarint(b, r.Value)
	case OpBatch:
		return appendBatch(b, r.Batch)
	case OpArm:
		if len(r.Conds) == 0 || len(r.Conds) > MaxArmConds {
			return nil, fmt.Errorf("encode arm: %d conditions, 1 to %d", len(r.Conds), MaxArmConds)
		}
		b = binary.AppendUvarint(b, r.Value)
		b = binary.AppendUvarint(b, uint64(len(r.Conds)))
		for _, c := range r.Conds {
			b = append(b, byte(c.Table))
			b = append(b, c.Key[:]...)
			b = appendString(b, c.Name)
			b = binary.AppendUvarint(b, c.Mask)
			b = binary.AppendUvarint(b, c.Want)
		}
		return appendBatch(b, r.Batch)
	case OpWatch:
		if len(r.Keys) > MaxWatchKeys {
			return nil, fmt.Errorf("encode watch: %d keys, at most %d", len(r.Keys), MaxWatchKeys)
		}
		flags := boolByte(r.Flag)
		if r.Cond != nil {
			if r.Cond.With == "" && r.Cond.Without == "" {
				return nil, fmt.Errorf("encode watch: an empty condition (use nil)")
			}
			flags |= watchCondFlag
		}
		b = append(b, byte(r.Table), flags)
		b = binary.AppendUvarint(b, uint64(len(r.Keys)))
		for _, k := range r.Keys {
			b = append(b, k[:]...)
		}
		if r.Cond != nil {
			b = appendString(b, r.Cond.With)
			b = appendString(b, r.Cond.Without)
		}
		if r.Parent != nil {
			if len(r.Keys) > 0 {
				return nil, fmt.Errorf("encode watch: a parent filter needs an empty key list")
			}
			// Optional: absent means no parent filter.
			b = append(b, r.Parent[:]...)
		}
	case OpChanges:
		b = binary.AppendUvarint(b, r.Value)
		b = append(b, boolByte(r.Flag))
		if r.Name != "" {
			// Optional: absent means no exclusion.
			b = appendString(b, r.Name)
		}
	case OpMerge:
		if len(r.Rows) > MaxMergeRows {
			return nil, fmt.Errorf("encode merge: %d rows, at most %d", len(r.Rows), MaxMergeRows)
		}
		b = appendString(b, r.Name)
		b = binary.AppendUvarint(b, r.Value)
		b = binary.AppendUvarint(b, uint64(len(r.Rows)))
		for i := range r.Rows {
			b = AppendRow(b, &r.Rows[i])
		}
	case OpCursor, OpCheckpoint:
		b = appendString(b, r.Name)
	case OpScan:
		b = append(b, byte(r.Table))
		b = binary.AppendUvarint(b, r.Value)
		if r.Before > 0 {
			// Optional: absent means no bound, so a scan without it
			// is encoded as before the field existed.
			b = binary.AppendUvarint(b, r.Before)
		}
	case OpMail:
		b = append(b, r.Ref.Key[:]...)
	case OpMails:
		if len(r.Keys) == 0 || len(r.Keys) > MaxMailsKeys {
			return nil, fmt.Errorf("encode mails: %d keys, want 1 to %d", len(r.Keys), MaxMailsKeys)
		}
		b = binary.AppendUvarint(b, uint64(len(r.Keys)))
		for _, k := range r.Keys {
			b = append(b, k[:]...)
		}
		var flags byte
		if r.Flag {
			flags |= MailsPacked
		}
		if r.NoBody {
			flags |= MailsNoBody
		}
		if r.Value > 0 || flags != 0 {
			// Optional: absent means no budget. With the flag byte
			// after it, 0 means no budget too.
			b = binary.AppendUvarint(b, r.Value)
		}
		if flags != 0 {
			b = append(b, flags)
		}
	case OpList:
		if r.Parent == nil {
			return nil, fmt.Errorf("encode list: no parent key")
		}
		b = append(b, byte(r.Table))
		b = append(b, r.Parent[:]...)
		b = binary.AppendUvarint(b, r.After)
		b = binary.AppendUvarint(b, r.Value)
		if r.Flag {
			b = append(b, ListPacked)
		}
	default:
		return nil, fmt.Errorf("encode request: unknown op %d", r.Op)
	}
	return b, nil
}

// partMin is the smallest content AppendRequestParts sends as a piece of
// its own; smaller ones are copied (a frame per tiny piece costs more).
const partMin = 4 << 10

// appendBatch appends the sub-requests of a batch or an arm request.
func appendBatch(b []byte, batch []Request) ([]byte, error) {
	if len(batch) > MaxBatchOps {
		return nil, fmt.Errorf("encode batch: %d ops, at most %d", len(batch), MaxBatchOps)
	}
	b = binary.AppendUvarint(b, uint64(len(batch)))
	for i := range batch {
		switch batch[i].Op {
		case OpFindOrInsert, OpSet, OpIncrement:
		default:
			return nil, fmt.Errorf("encode batch: op %s cannot be batched", batch[i].Op)
		}
		var err error
		if b, err = AppendRequest(b, &batch[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// AppendRequestParts encodes r as pieces whose concatenation is exactly
// AppendRequest's encoding. The contents of a merge's rows and of a batch's
// find-or-inserts are pieces of their own — the caller's slices, not
// copies — so a client can send large rows without building the whole
// message (a received mail's body is then held once). Other operations
// come as one piece.
func AppendRequestParts(r *Request) ([][]byte, error) {
	if r.Op == OpBatch {
		return appendBatchParts(r)
	}
	if r.Op != OpMerge {
		b, err := AppendRequest(make([]byte, 0, r.SizeHint()), r)
		return [][]byte{b}, err
	}
	if len(r.Rows) > MaxMergeRows {
		return nil, fmt.Errorf("encode merge: %d rows, at most %d", len(r.Rows), MaxMergeRows)
	}
	b := append([]byte(nil), byte(r.Op))
	b = appendString(b, r.Name)
	b = binary.AppendUvarint(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Rows)))
	parts := make([][]byte, 0, 1+2*len(r.Rows))
	for i := range r.Rows {
		row := r.Rows[i]
		if !row.HasContent || len(row.Content) == 0 {
			b = AppendRow(b, &row)
			continue
		}
		row.Size = uint64(len(row.Content))
		b = AppendRowHeader(b, &row)
		parts = append(parts, b, row.Content)
		b = nil
	}
	if len(b) > 0 || len(parts) == 0 {
		parts = append(parts, b)
	}
	return parts, nil
}

func appendBatchParts(r *Request) ([][]byte, error) {
	if len(r.Batch) > MaxBatchOps {
		return nil, fmt.Errorf("encode batch: %d ops, at most %d", len(r.Batch), MaxBatchOps)
	}
	b := append([]byte(nil), byte(r.Op))
	b = binary.AppendUvarint(b, uint64(len(r.Batch)))
	var parts [][]byte
	for i := range r.Batch {
		sub := &r.Batch[i]
		if sub.Op == OpFindOrInsert && len(sub.Content) >= partMin {
			b = append(b, byte(sub.Op), byte(sub.Table))
			b = binary.AppendUvarint(b, uint64(len(sub.Content)))
			parts = append(parts, b, sub.Content)
			b = nil
			continue
		}
		switch sub.Op {
		case OpFindOrInsert, OpSet, OpIncrement:
		default:
			return nil, fmt.Errorf("encode batch: op %s cannot be batched", sub.Op)
		}
		var err error
		if b, err = AppendRequest(b, sub); err != nil {
			return nil, err
		}
	}
	if len(b) > 0 || len(parts) == 0 {
		parts = append(parts, b)
	}
	return parts, nil
}

// AppendRowHeader appends everything of a row but its content: with
// HasContent the content's length comes last, and the caller appends exactly
// Size content bytes after it. This lets dbd stream a large content from
// storage without building the whole message.
func AppendRowHeader(b []byte, r *Row) []byte {
	b = append(b, byte(r.Table))
	b = append(b, r.Key[:]...)
	b = binary.AppendUvarint(b, r.RowNo)
	b = binary.AppendUvarint(b, r.Stamp)
	if r.EncodedState != nil {
		b = append(b, r.EncodedState...)
	} else {
		b = r.State.AppendBinary(b)
	}
	var flags byte
	if r.HasContent {
		flags |= 1
	}
	if r.HasDigest {
		flags |= 2
	}
	b = append(b, flags)
	if r.HasDigest {
		b = append(b, r.Digest[:]...)
	}
	b = binary.AppendUvarint(b, r.Size)
	return b
}

// AppendRow appends a whole row, content included when HasContent.
func AppendRow(b []byte, r *Row) []byte {
	rr := *r
	if r.HasContent {
		rr.Size = uint64(len(r.Content))
	}
	b = AppendRowHeader(b, &rr)
	if r.HasContent {
		b = append(b, r.Content...)
	}
	return b
}

// AppendResult appends a result answer for a request of operation op.
func AppendResult(b []byte, op Op, res *Result) []byte {
	if res.NotFound {
		return append(b, byte(KindNotFound))
	}
	b = append(b, byte(KindResult))
	return appendResultBody(b, op, res)
}

func appendResultBody(b []byte, op Op, res *Result) []byte {
	switch op {
	case OpFindOrInsert:
		b = binary.AppendUvarint(b, res.RowNo)
		b = append(b, boolByte(res.New))
	case OpSet, OpIncrement:
		b = binary.AppendUvarint(b, res.RowNo)
	case OpFind:
		b = AppendRow(b, res.Row)
	case OpArm:
		b = append(b, boolByte(res.Fired))
		if !res.Fired {
			break
		}
		b = appendResultBody(b, OpBatch, res)
	case OpBatch, OpMerge:
		b = binary.AppendUvarint(b, uint64(len(res.Results)))
		for i := range res.Results {
			r := &res.Results[i]
			b = append(b, boolByte(r.NotFound))
			b = binary.AppendUvarint(b, r.RowNo)
			b = append(b, boolByte(r.New))
		}
	case OpCursor:
		b = binary.AppendUvarint(b, res.Value)
	case OpCheckpoint:
		b = appendString(b, truncate(res.Path, MaxPath))
	case OpStatus:
		figs := res.Status[:min(len(res.Status), MaxStatusVals)]
		b = binary.AppendUvarint(b, uint64(len(figs)))
		for _, f := range figs {
			b = appendString(b, truncate(f.Name, maxFigureName))
			b = appendString(b, truncate(f.Value, maxFigureValue))
		}
	}
	return b
}

// MaxPath bounds the path in a checkpoint result.
const MaxPath = 4096

// MaxErrorText bounds the text of an error answer; longer texts are cut.
const MaxErrorText = 4096

// Bounds of a status answer; the encoder cuts what exceeds them, so every
// answer it writes decodes.
const (
	maxFigureName  = 256
	maxFigureValue = 4096
)

// AppendError appends an error answer. A text longer than MaxErrorText
// bytes is cut (at a UTF-8 boundary).
func AppendError(b []byte, code Code, msg string) []byte {
	b = append(b, byte(KindError), byte(code))
	return appendString(b, truncate(msg, MaxErrorText))
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// AppendEventHeader appends the kind byte of a stream event; a row follows.
func AppendEventHeader(b []byte) []byte { return append(b, byte(KindEvent)) }

// AppendRowsHeader appends the start of a rows answer that carries n rows
// (1 to MaxPackedRows); the n rows follow, each as AppendRow writes it (or
// AppendRowHeader and then its content).
func AppendRowsHeader(b []byte, n int) []byte {
	b = append(b, byte(KindRows))
	return binary.AppendUvarint(b, uint64(n))
}

// AppendEnd appends the end-of-stream answer.
func AppendEnd(b []byte) []byte { return append(b, byte(KindEnd)) }

func appendRef(b []byte, r Ref) []byte {
	if r.ByKey {
		b = append(b, 1)
		return append(b, r.Key[:]...)
	}
	b = append(b, 0)
	return appendBytes(b, r.Content)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// ---- decoding -------------------------------------------------------------

// DecodeRequest decodes one request message. Byte slices in the result
// alias msg. It validates tables and names so the server can trust them.
func DecodeRequest(msg []byte) (*Request, error) {
	d := &dec{b: msg}
	r := d.request(true)
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// batchInto decodes the sub-requests of a batch or an arm request.
func (d *dec) batchInto(r *Request) {
	n := d.count(MaxBatchOps)
	// Sized once, not grown: a Request is some 200 bytes, and a
	// batch of smtpd's seven rows grew through four arrays. The
	// capacity is bounded by what the message can hold (a batched
	// request takes at least minBatched bytes), so a small message
	// that claims 4096 requests allocates for what it carries.
	r.Batch = make([]Request, 0, min(n, uint64(len(d.b))/minBatched))
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Batch = append(r.Batch, Request{})
		sub := &r.Batch[len(r.Batch)-1]
		d.requestInto(sub, false)
		switch sub.Op {
		case OpFindOrInsert, OpSet, OpIncrement:
		default:
			d.fail("op cannot be batched")
		}
	}
}

func (d *dec) request(top bool) *Request {
	r := &Request{}
	d.requestInto(r, top)
	return r
}

// requestInto decodes one request into r, which must be zero: a batch
// decodes its sub-requests in place, one allocation for all of them.
func (d *dec) requestInto(r *Request, top bool) {
	r.Op = Op(d.byte())
	switch r.Op {
	case OpPing, OpStatus, OpDump:
	case OpFindOrInsert:
		r.Table = d.table()
		r.Content = d.bytes()
	case OpFind:
		r.Table = d.table()
		r.Ref = d.ref()
		if d.err == nil && len(d.b) > 0 {
			if r.Flag = d.bool(); !r.Flag && d.err == nil {
				d.fail("find: meta-only flag 0 (omit it instead)")
			}
		}
	case OpSet, OpIncrement:
		r.Table = d.table()
		r.Ref = d.ref()
		r.Name = d.name()
		r.Value = d.uvarint()
	case OpArm:
		if !top {
			d.fail("nested arm")
			return
		}
		r.Value = d.uvarint()
		n := d.count(MaxArmConds)
		if n == 0 && d.err == nil {
			d.fail("arm: no condition")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Conds = append(r.Conds, ArmCond{Table: d.table(), Key: d.key(), Name: d.name(), Mask: d.uvarint(), Want: d.uvarint()})
		}
		d.batchInto(r)
	case OpBatch:
		if !top {
			d.fail("nested batch")
			return
		}
		d.batchInto(r)
	case OpWatch:
		r.Table = d.table()
		flags := d.byte()
		if flags&^(1|watchCondFlag) != 0 {
			d.fail("watch: unknown flags")
		}
		r.Flag = flags&1 != 0
		n := d.count(MaxWatchKeys)
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Keys = append(r.Keys, d.key())
		}
		if flags&watchCondFlag != 0 {
			c := WatchCond{With: d.optName(), Without: d.optName()}
			if d.err == nil && c.With == "" && c.Without == "" {
				d.fail("watch: empty condition (omit it instead)")
			}
			r.Cond = &c
		}
		if d.err == nil && len(d.b) > 0 {
			if n > 0 {
				d.fail("watch: a parent filter needs an empty key list")
			}
			k := d.key()
			r.Parent = &k
		}
	case OpChanges:
		r.Value = d.uvarint()
		r.Flag = d.bool()
		if d.err == nil && len(d.b) > 0 {
			r.Name = d.optName()
			if r.Name == "" && d.err == nil {
				d.fail("empty exclude name (omit it instead)")
			}
		}
	case OpMerge:
		r.Name = d.optName()
		r.Value = d.uvarint()
		n := d.count(MaxMergeRows)
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Rows = append(r.Rows, d.row())
		}
	case OpCursor:
		r.Name = d.name()
	case OpCheckpoint:
		r.Name = d.name()
		if d.err == nil && strings.Trim(r.Name, ".") == "" {
			d.fail("checkpoint: name of dots only")
		}
	case OpScan:
		r.Table = d.table()
		r.Value = d.uvarint()
		// Optional cursor: a dbd older than it refuses it as trailing
		// bytes (bad-request); the client then says dbd is too old.
		if d.err == nil && len(d.b) > 0 {
			r.Before = d.uvarint()
			if r.Before == 0 && d.err == nil {
				d.fail("scan: before 0 (omit it instead)")
			}
		}
	case OpMail:
		r.Table = model.Receive
		r.Ref = Ref{ByKey: true, Key: d.key()}
	case OpMails:
		r.Table = model.Receive
		n := d.count(MaxMailsKeys)
		if n == 0 && d.err == nil {
			d.fail("mails: no key")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Keys = append(r.Keys, d.key())
		}
		if d.err == nil && len(d.b) > 0 {
			r.Value = d.uvarint()
			if d.err == nil && len(d.b) > 0 {
				switch flags := d.byte(); {
				case flags&^(MailsPacked|MailsNoBody) != 0:
					d.fail("mails: unknown flags")
				case flags == 0:
					d.fail("mails: flags 0 (omit them instead)")
				default:
					r.Flag = flags&MailsPacked != 0
					r.NoBody = flags&MailsNoBody != 0
				}
			} else if r.Value == 0 && d.err == nil {
				d.fail("mails: byte budget 0 without flags (omit it instead)")
			}
		}
	case OpList:
		r.Table = d.table()
		k := d.key()
		r.Parent = &k
		r.After = d.uvarint()
		r.Value = d.uvarint()
		// Optional flags: a dbd older than them refuses the byte as
		// trailing (bad-request), and the client asks again without.
		if d.err == nil && len(d.b) > 0 {
			if d.byte() != ListPacked {
				d.fail("list: unknown flags")
			}
			r.Flag = true
		}
	default:
		d.fail("unknown op")
	}
}

// DecodeAnswer decodes one answer message to a request of operation op. An
// error answer is returned as *Error; a stream event returns its row in
// Result.Row; the end of a stream returns (nil, io.EOF-like ErrEndOfStream).
func DecodeAnswer(op Op, msg []byte) (*Result, error) {
	rows, res, err := DecodeAnswerTo(nil, op, msg)
	if err == nil && rows != nil {
		res.Rows = rows
	}
	return res, err
}

// DecodeAnswerTo is DecodeAnswer that appends the rows of a rows answer
// (KindRows) to rows and returns them, instead of a new list in
// Result.Rows: a reader of many such answers (the mails of a FETCH)
// decodes them all into one list. Other answers return rows unchanged.
func DecodeAnswerTo(rows []Row, op Op, msg []byte) ([]Row, *Result, error) {
	before := len(rows)
	d := &dec{b: msg}
	kind := Kind(d.byte())
	var res *Result
	switch kind {
	case KindNotFound:
		res = &Result{NotFound: true}
	case KindError:
		code := Code(d.byte())
		text := d.str(MaxErrorText)
		if d.err == nil && len(d.b) == 0 {
			return rows, nil, &Error{Code: code, Msg: text}
		}
	case KindEnd:
		if d.err == nil && len(d.b) == 0 {
			return rows, nil, ErrEndOfStream
		}
	case KindEvent:
		row := d.row()
		res = &Result{Row: &row}
	case KindRows:
		if op != OpMails && op != OpList {
			d.fail("rows answer to an op other than mails and list")
			break
		}
		n := d.count(MaxPackedRows)
		if n == 0 && d.err == nil {
			d.fail("rows answer without rows")
		}
		if rows == nil {
			// Allocate by what arrived, not by the count it claims.
			rows = make([]Row, 0, min(n, uint64(len(d.b)/minRowSize)))
		}
		res = &Result{}
		for i := uint64(0); i < n && d.err == nil; i++ {
			rows = append(rows, d.row())
		}
	case KindResult:
		res = d.resultBody(op)
	default:
		d.fail("unknown answer kind")
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		clear(rows[before:])
		return rows[:before], nil, d.err
	}
	return rows, res, nil
}

// minRowSize is the fewest bytes a row takes: table, key, row number,
// stamp, an empty state (no columns, no counters), flags, size.
const minRowSize = 1 + model.KeySize + 1 + 1 + 2 + 1 + 1

// ErrEndOfStream is returned by DecodeAnswer for the end of a stream.
var ErrEndOfStream = errors.New("wire: end of stream")

func (d *dec) resultBody(op Op) *Result {
	res := &Result{}
	switch op {
	case OpPing:
	case OpFindOrInsert:
		res.RowNo = d.uvarint()
		res.New = d.bool()
	case OpSet, OpIncrement:
		res.RowNo = d.uvarint()
	case OpFind:
		row := d.row()
		res.Row = &row
	case OpArm:
		if res.Fired = d.bool(); res.Fired {
			res.Results = d.resultBody(OpBatch).Results
		}
	case OpBatch, OpMerge:
		n := d.count(max(MaxBatchOps, MaxMergeRows))
		// Sized at once (a result takes at least three bytes, so a
		// false count cannot make it large): grown by appends, a batch's
		// results cost smtpd more memory than the rest of its answers.
		if n > 0 {
			res.Results = make([]Result, 0, min(n, uint64(len(d.b))/3))
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			var r Result
			r.NotFound = d.bool()
			r.RowNo = d.uvarint()
			r.New = d.bool()
			res.Results = append(res.Results, r)
		}
	case OpCursor:
		res.Value = d.uvarint()
	case OpCheckpoint:
		res.Path = d.str(MaxPath)
	case OpStatus:
		n := d.count(MaxStatusVals)
		for i := uint64(0); i < n && d.err == nil; i++ {
			res.Status = append(res.Status, Figure{Name: d.str(maxFigureName), Value: d.str(maxFigureValue)})
		}
	default:
		d.fail("no result for this op")
	}
	return res
}

// DecodeRow decodes one row (as written by AppendRow) that fills msg.
func DecodeRow(msg []byte) (Row, error) {
	d := &dec{b: msg}
	r := d.row()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return r, d.err
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	d.b = nil
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("short message")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("bad boolean")
		return false
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// minBatched is the size of the smallest request a batch may hold: a
// find-or-insert of empty content (op, table, length 0).
const minBatched = 3

func (d *dec) count(max uint64) uint64 {
	n := d.uvarint()
	if n > max {
		d.fail("count too large")
		return 0
	}
	return n
}

func (d *dec) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length beyond message")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) bytes() []byte { return d.take(d.uvarint()) }

func (d *dec) str(max uint64) string {
	n := d.uvarint()
	if n > max {
		d.fail("string too long")
		return ""
	}
	return string(d.take(n))
}

func (d *dec) name() string {
	s := d.str(model.MaxNameLen)
	if d.err == nil {
		if err := model.CheckName(s); err != nil {
			d.fail(err.Error())
		}
	}
	return s
}

// optName reads a name that may be empty (an optional cursor).
func (d *dec) optName() string {
	s := d.str(model.MaxNameLen)
	if d.err == nil && s != "" {
		if err := model.CheckName(s); err != nil {
			d.fail(err.Error())
		}
	}
	return s
}

func (d *dec) table() model.Table {
	t := model.Table(d.byte())
	if d.err == nil && !t.Valid() {
		d.fail("unknown table")
	}
	return t
}

func (d *dec) key() model.Key {
	var k model.Key
	copy(k[:], d.take(model.KeySize))
	return k
}

func (d *dec) ref() Ref {
	switch d.byte() {
	case 0:
		return Ref{Content: d.bytes()}
	case 1:
		return Ref{ByKey: true, Key: d.key()}
	default:
		d.fail("bad ref kind")
		return Ref{}
	}
}

func (d *dec) row() Row {
	var r Row
	r.Table = d.table()
	r.Key = d.key()
	r.RowNo = d.uvarint()
	r.Stamp = d.uvarint()
	if d.err == nil {
		st, rest, err := model.DecodeState(d.b)
		if err != nil {
			d.fail(err.Error())
			return r
		}
		r.State, d.b = st, rest
	}
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("bad row flags")
		return r
	}
	r.HasContent = flags&1 != 0
	r.HasDigest = flags&2 != 0
	if r.HasDigest {
		copy(r.Digest[:], d.take(32))
	}
	r.Size = d.uvarint()
	if r.HasContent {
		r.Content = d.take(r.Size)
	}
	return r
}

// RequestSize returns the total length of a request message from its first
// bytes, when its layout declares it: a find-or-insert is op, table, a
// varint length, then that many content bytes; a find by content is op,
// table, ref kind 0, length, content. ok is false for other
// operations or when p is too short to tell. The server uses it to size a
// large request's buffer once (no growth by copying) and to refuse an
// oversized request before its bytes arrive.
func RequestSize(p []byte) (n int, ok bool) {
	var at int // offset of the content length
	switch {
	case len(p) >= 3 && Op(p[0]) == OpFindOrInsert:
		at = 2 // op, table
	case len(p) >= 4 && Op(p[0]) == OpFind && p[2] == 0:
		at = 3 // op, table, ref by content
	default:
		return 0, false
	}
	l, k := binary.Uvarint(p[at:])
	// The size must fit an int: with a 32-bit int a length near 2^32
	// wrapped to a small or negative size.
	if k <= 0 || l > uint64(1<<40) || l > uint64(math.MaxInt-at-k) {
		return 0, false
	}
	return at + k + int(l), true
}

// SizeHint returns roughly how many bytes r encodes to, so an encoder can
// allocate once.
func (r *Request) SizeHint() int {
	n := 64 + len(r.Content) + len(r.Ref.Content) + len(r.Name) + 32*len(r.Keys) + 64*len(r.Conds)
	for i := range r.Batch {
		n += r.Batch[i].SizeHint()
	}
	for i := range r.Rows {
		n += 128 + len(r.Rows[i].Content)
	}
	return n
}
