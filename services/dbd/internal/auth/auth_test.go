package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
)

// Request builders keep the tables below readable.

func find(t model.Table) wire.Request  { return wire.Request{Op: wire.OpFind, Table: t} }
func watch(t model.Table) wire.Request { return wire.Request{Op: wire.OpWatch, Table: t} }
func scan(t model.Table) wire.Request  { return wire.Request{Op: wire.OpScan, Table: t, Value: 10} }
func insert(t model.Table) wire.Request {
	return wire.Request{Op: wire.OpFindOrInsert, Table: t, Content: []byte("x")}
}
func set(t model.Table, col string) wire.Request {
	return wire.Request{Op: wire.OpSet, Table: t, Ref: wire.Ref{Content: []byte("x")}, Name: col, Value: model.FlagSet}
}
func incr(t model.Table, ctr string) wire.Request {
	return wire.Request{Op: wire.OpIncrement, Table: t, Ref: wire.Ref{Content: []byte("x")}, Name: ctr, Value: 1}
}
func op(o wire.Op) wire.Request             { return wire.Request{Op: o} }
func batch(rs ...wire.Request) wire.Request { return wire.Request{Op: wire.OpBatch, Batch: rs} }

// mailBatch is the batch smtpd writes for one received mail (SPEC §4).
func mailBatch(extra ...wire.Request) wire.Request {
	rs := []wire.Request{
		insert(model.Header), insert(model.Body), insert(model.Received), insert(model.Mail),
		insert(model.MsgID), insert(model.Receive), insert(model.ThrowIn), insert(model.Capture),
	}
	return batch(append(rs, extra...)...)
}

// describe names a request in test output.
func describe(r wire.Request) string {
	switch r.Op {
	case wire.OpSet, wire.OpIncrement:
		return fmt.Sprintf("%s %s %q", r.Op, r.Table, r.Name)
	case wire.OpFind, wire.OpWatch, wire.OpScan, wire.OpFindOrInsert:
		return fmt.Sprintf("%s %s", r.Op, r.Table)
	case wire.OpBatch:
		parts := make([]string, len(r.Batch))
		for i := range r.Batch {
			parts[i] = describe(r.Batch[i])
		}
		return "batch[" + strings.Join(parts, ", ") + "]"
	}
	return r.Op.String()
}

// checkCase is one decision of the role table. The cases are the
// decisions docs/roles.md explains; TestCheckMatrix below covers every
// role × table × operation.
type checkCase struct {
	role Role
	req  wire.Request
	ok   bool
}

func allow(r Role, reqs ...wire.Request) []checkCase {
	cs := make([]checkCase, len(reqs))
	for i, q := range reqs {
		cs[i] = checkCase{r, q, true}
	}
	return cs
}

func refuse(r Role, reqs ...wire.Request) []checkCase {
	cs := make([]checkCase, len(reqs))
	for i, q := range reqs {
		cs[i] = checkCase{r, q, false}
	}
	return cs
}

func checkCases() []checkCase {
	var cs []checkCase
	add := func(more []checkCase) { cs = append(cs, more...) }

	// smtpd stores mail and reads what it needs to answer the client, but
	// cannot read mail back, decide verdicts, or touch replication.
	add(allow(SMTPD,
		insert(model.Body), insert(model.Header), insert(model.Received), insert(model.Mail),
		insert(model.MsgID), insert(model.Receive), insert(model.ThrowIn), insert(model.Capture),
		insert(model.RDNS),
		find(model.Mailbox), find(model.Receive), watch(model.Receive), find(model.ThrowIn),
		find(model.Config), find(model.RDNS),
		set(model.Receive, model.ColAcknowledged),
		set(model.Receive, model.ReceivedColumn(model.KeyOf(model.Received, []byte("r")))),
		set(model.ThrowIn, "reply"), set(model.Capture, "done"), set(model.RDNS, "checked"),
		incr(model.Receive, "attempts"), incr(model.ThrowIn, "rcpts"),
		op(wire.OpStatus), op(wire.OpPing),
		mailBatch(),
		mailBatch(set(model.Receive, model.ColAcknowledged), incr(model.ThrowIn, "n")),
	))
	add(refuse(SMTPD,
		find(model.Body), find(model.Header), find(model.Received), find(model.Capture),
		watch(model.Body), scan(model.Header), scan(model.Capture),
		find(model.POP3), find(model.Text),
		insert(model.Mailbox), insert(model.POP3), insert(model.Text), insert(model.Config),
		set(model.Receive, model.ColVerdict), set(model.Receive, model.ColBackedUp),
		set(model.Receive, model.ColDeleted), set(model.Receive, "spam.score"),
		set(model.Receive, "ack.x"), set(model.Receive, "acknowledged"), set(model.Receive, "rcvd"),
		set(model.Mail, model.ColBackedUp), set(model.Body, model.ColBackedUp),
		incr(model.Mailbox, "n"), incr(model.Text, "n"),
		op(wire.OpChanges), op(wire.OpMerge), op(wire.OpDump), op(wire.OpCursor),
		mailBatch(set(model.Receive, model.ColVerdict)),
		mailBatch(find(model.Body)),
		batch(insert(model.Receive), op(wire.OpMerge)),
	))

	// spamd reads everything and writes verdicts and its model, but never
	// acknowledges, deletes or marks backups.
	add(allow(SpamD,
		find(model.Body), find(model.Header), watch(model.Receive), scan(model.Receive),
		find(model.Capture), find(model.ThrowIn), find(model.RDNS),
		set(model.Receive, model.ColVerdict), set(model.Receive, "spam.score"),
		set(model.Receive, "spam.bayes.p"), set(model.Mail, "spam.digest"),
		set(model.Text, "anything"), set(model.Config, "anything"), set(model.RDNS, "anything"),
		insert(model.Text), insert(model.Config), insert(model.RDNS), insert(model.Mailbox),
		incr(model.Text, "spam"), incr(model.Receive, "checks"), incr(model.Mailbox, "spam"),
		op(wire.OpStatus), op(wire.OpPing),
		batch(set(model.Receive, model.ColVerdict), set(model.Receive, "spam.score"), incr(model.Text, "ham")),
	))
	add(refuse(SpamD,
		set(model.Receive, model.ColAcknowledged), set(model.Receive, model.ColDeleted),
		set(model.Receive, model.ColBackedUp), set(model.Receive, "imap.seen"),
		set(model.Receive, "spam"), set(model.Receive, "spamx"), set(model.Receive, "verdict.x"),
		set(model.Mail, model.ColVerdict), set(model.Body, "spam.x"),
		insert(model.Body), insert(model.Header), insert(model.Mail), insert(model.Receive),
		incr(model.Body, "n"),
		op(wire.OpChanges), op(wire.OpMerge), op(wire.OpDump), op(wire.OpCursor),
		batch(set(model.Receive, model.ColVerdict), set(model.Receive, model.ColAcknowledged)),
	))

	// backupd replicates: it reads everything, streams changes, merges,
	// keeps cursors and marks rows backed up. It inserts nothing itself.
	add(allow(BackupD,
		op(wire.OpChanges), op(wire.OpMerge), op(wire.OpCursor), op(wire.OpStatus), op(wire.OpPing),
		find(model.Body), watch(model.Receive), scan(model.Text),
		set(model.Header, model.ColBackedUp), set(model.Body, model.ColBackedUp),
		set(model.Mail, model.ColBackedUp), set(model.Receive, model.ColBackedUp),
		batch(set(model.Header, model.ColBackedUp), set(model.Body, model.ColBackedUp)),
	))
	add(refuse(BackupD,
		insert(model.Body), insert(model.Receive), insert(model.Text),
		set(model.Receive, model.ColVerdict), set(model.Receive, "spam.score"),
		set(model.Receive, model.ColAcknowledged), set(model.Receive, model.ColDeleted),
		set(model.ThrowIn, model.ColBackedUp), set(model.Text, model.ColBackedUp),
		incr(model.Receive, "n"),
		op(wire.OpDump),
		batch(set(model.Receive, model.ColBackedUp), insert(model.Receive)),
	))

	// pop3d/imapd read the mail in their mailboxes, mark deletions and
	// flags, and store APPENDed mail; they see nothing of SMTP sessions.
	add(allow(Mailbox,
		find(model.Body), find(model.Header), find(model.Received), find(model.Mail),
		find(model.Mailbox), watch(model.Receive), scan(model.Receive), find(model.POP3),
		find(model.Text), find(model.Config),
		set(model.Receive, model.ColDeleted), set(model.Receive, "imap.seen"),
		set(model.Receive, "imap.flag.junk"), set(model.Receive, "pop3.retrieved"),
		set(model.Text, "imap.subscribed"), set(model.Text, "spam.feedback"),
		insert(model.Body), insert(model.Header), insert(model.Mail), insert(model.Receive),
		insert(model.Text),
		incr(model.Receive, "reads"), incr(model.POP3, "logins"), incr(model.Text, "n"),
		op(wire.OpStatus), op(wire.OpPing),
		batch(insert(model.Header), insert(model.Body), insert(model.Mail), insert(model.Receive),
			set(model.Receive, "imap.seen")),
	))
	add(refuse(Mailbox,
		set(model.Receive, model.ColVerdict), set(model.Receive, model.ColAcknowledged),
		set(model.Receive, model.ColBackedUp), set(model.Receive, "spam.score"),
		set(model.Receive, "imap"), set(model.Receive, "deleted.x"),
		set(model.Text, "spam.feedback.x"), set(model.Text, "spam.score"),
		set(model.Mail, model.ColDeleted),
		find(model.ThrowIn), find(model.Capture), find(model.RDNS),
		watch(model.ThrowIn), scan(model.Capture),
		insert(model.ThrowIn), insert(model.Capture), insert(model.Mailbox), insert(model.POP3),
		op(wire.OpChanges), op(wire.OpMerge), op(wire.OpDump), op(wire.OpCursor),
		batch(set(model.Receive, model.ColDeleted), set(model.Receive, model.ColVerdict)),
	))

	// smsd reads accepted mail (forward copies are byte for byte) and
	// claims notifications.
	add(allow(Notify,
		find(model.Header), find(model.Mail), watch(model.Receive), find(model.Mailbox),
		find(model.Body), find(model.Received), set(model.Receive, "fwd.claim"),
		find(model.Text), find(model.Config),
		set(model.Receive, "sms.sent"), set(model.Receive, "fwd.done"), set(model.Text, "sms.quota"),
		insert(model.Text), incr(model.Text, "sms"),
		op(wire.OpStatus), op(wire.OpPing),
	))
	add(refuse(Notify,
		find(model.MsgID), insert(model.Received), set(model.Body, "fwd.claim"), find(model.Capture), find(model.ThrowIn), find(model.POP3),
		set(model.Receive, model.ColVerdict), set(model.Receive, model.ColDeleted),
		set(model.Receive, model.ColAcknowledged), set(model.Receive, "sms"),
		set(model.Text, "fwd.x"), set(model.Mail, "sms.sent"),
		insert(model.Receive), insert(model.Body), incr(model.Receive, "n"),
		op(wire.OpChanges), op(wire.OpMerge), op(wire.OpDump), op(wire.OpCursor),
		batch(set(model.Receive, "sms.sent"), set(model.Receive, model.ColDeleted)),
	))

	// admin (dbctl) may do everything except merge.
	add(allow(Admin,
		find(model.Body), watch(model.Capture), scan(model.POP3),
		insert(model.Body), insert(model.Config),
		set(model.Receive, model.ColVerdict), set(model.Receive, model.ColAcknowledged),
		set(model.Receive, model.ColDeleted), set(model.Body, model.ColBackedUp),
		set(model.Config, "anything"),
		incr(model.POP3, "logins"),
		op(wire.OpChanges), op(wire.OpDump), op(wire.OpCursor), op(wire.OpStatus), op(wire.OpPing),
		mailBatch(set(model.Receive, model.ColVerdict)),
	))
	add(refuse(Admin,
		op(wire.OpMerge),
		batch(insert(model.Body), op(wire.OpMerge)),
	))

	// Whatever the role: unknown operations and tables are refused.
	for _, r := range Roles() {
		add(refuse(r,
			op(wire.Op(0)), op(wire.Op(200)),
			find(model.Table(0)), insert(model.Table(0)), set(model.Table(0), "x"),
			find(model.Table(99)), insert(model.Table(99)), incr(model.Table(99), "x"),
		))
	}

	// A key without a known role may do nothing, not even ping.
	for _, r := range []Role{"", "root", "Admin", "smtpd "} {
		add(refuse(r, op(wire.OpPing), op(wire.OpStatus), find(model.Config), batch()))
	}
	return cs
}

func TestCheck(t *testing.T) {
	for _, c := range checkCases() {
		name := fmt.Sprintf("%s/%s", c.role, describe(c.req))
		t.Run(name, func(t *testing.T) {
			err := c.role.Check(&c.req)
			switch {
			case c.ok && err != nil:
				t.Errorf("Role(%q).Check(%s) = %v, want nil", c.role, describe(c.req), err)
			case !c.ok && err == nil:
				t.Errorf("Role(%q).Check(%s) = nil, want ErrForbidden", c.role, describe(c.req))
			case !c.ok && !errors.Is(err, ErrForbidden):
				t.Errorf("Role(%q).Check(%s) = %v, want an error wrapping ErrForbidden", c.role, describe(c.req), err)
			case !c.ok && !strings.Contains(err.Error(), string(c.role)):
				t.Errorf("Role(%q).Check(%s) = %v, want the role named", c.role, describe(c.req), err)
			}
		})
	}
}

// TestCheckPing: every role may ping, so a client can check its session
// without being allowed anything else.
func TestCheckPing(t *testing.T) {
	for _, r := range Roles() {
		req := op(wire.OpPing)
		if err := r.Check(&req); err != nil {
			t.Errorf("Role(%q).Check(ping) = %v, want nil", r, err)
		}
	}
}

// TestCheckBatchNamesRefusedPart: the refusal of a batch names the
// sub-request that was refused, so an operator can see what to fix.
func TestCheckBatchNamesRefusedPart(t *testing.T) {
	req := mailBatch(set(model.Receive, model.ColVerdict))
	err := SMTPD.Check(&req)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("SMTPD.Check(mail batch + set verdict) = %v, want ErrForbidden", err)
	}
	for _, want := range []string{"set column verdict", "receive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("SMTPD.Check(mail batch + set verdict) = %q, want it to contain %q", err, want)
		}
	}
}

// tableAccess is what TestCheckMatrix expects a role to do with one table,
// as letters: r = find, watch and scan; i = find-or-insert; n = increment;
// s = set any column (a column no service uses, so only roles with "any
// column" on that table may set it; named columns are in TestCheck).
type tableAccess map[model.Table]string

// wantMatrix is the role table as docs/roles.md shows it. A change to the
// role table must change this matrix and that document together.
var wantMatrix = map[Role]tableAccess{
	Admin: {
		model.Body: "rins", model.Header: "rins", model.Received: "rins", model.Mail: "rins",
		model.MsgID: "rins", model.Mailbox: "rins", model.Receive: "rins", model.ThrowIn: "rins",
		model.Capture: "rins", model.RDNS: "rins", model.POP3: "rins", model.Text: "rins",
		model.Config: "rins",
	},
	SMTPD: {
		model.Body: "i", model.Header: "i", model.Received: "i", model.Mail: "ri",
		model.MsgID: "ri", model.Mailbox: "r", model.Receive: "rin", model.ThrowIn: "rins",
		model.Capture: "is", model.RDNS: "rins", model.POP3: "", model.Text: "",
		model.Config: "r",
	},
	SpamD: {
		model.Body: "r", model.Header: "r", model.Received: "r", model.Mail: "r",
		model.MsgID: "r", model.Mailbox: "rin", model.Receive: "rn", model.ThrowIn: "r",
		model.Capture: "r", model.RDNS: "rins", model.POP3: "r", model.Text: "rins",
		model.Config: "rins",
	},
	BackupD: {
		model.Body: "r", model.Header: "r", model.Received: "r", model.Mail: "r",
		model.MsgID: "r", model.Mailbox: "r", model.Receive: "r", model.ThrowIn: "r",
		model.Capture: "r", model.RDNS: "r", model.POP3: "r", model.Text: "r",
		model.Config: "r",
	},
	Mailbox: {
		model.Body: "ri", model.Header: "ri", model.Received: "ri", model.Mail: "ri",
		model.MsgID: "ri", model.Mailbox: "r", model.Receive: "rin", model.ThrowIn: "",
		model.Capture: "", model.RDNS: "", model.POP3: "rn", model.Text: "rin",
		model.Config: "r",
	},
	Notify: {
		model.Body: "r", model.Header: "r", model.Received: "r", model.Mail: "r",
		model.MsgID: "", model.Mailbox: "r", model.Receive: "r", model.ThrowIn: "",
		model.Capture: "", model.RDNS: "", model.POP3: "", model.Text: "rin",
		model.Config: "r",
	},
}

// wantOps lists the table-less operations (besides ping) each role may use.
var wantOps = map[Role][]wire.Op{
	Admin:   {wire.OpChanges, wire.OpStatus, wire.OpDump, wire.OpCursor, wire.OpCheckpoint},
	SMTPD:   {wire.OpStatus},
	SpamD:   {wire.OpStatus},
	BackupD: {wire.OpChanges, wire.OpMerge, wire.OpStatus, wire.OpCursor},
	Mailbox: {wire.OpStatus},
	Notify:  {wire.OpStatus},
}

// TestCheckMatrix checks every role against every table and operation, so
// a widened permission cannot slip in unnoticed.
func TestCheckMatrix(t *testing.T) {
	if len(wantMatrix) != len(Roles()) {
		t.Fatalf("wantMatrix has %d roles, Roles() has %d", len(wantMatrix), len(Roles()))
	}
	for _, r := range Roles() {
		want, ok := wantMatrix[r]
		if !ok {
			t.Errorf("role %s missing from wantMatrix", r)
			continue
		}
		for _, tb := range model.Tables() {
			w, ok := want[tb]
			if !ok {
				t.Errorf("wantMatrix[%s] has no entry for table %s", r, tb)
				continue
			}
			probes := []struct {
				letter byte
				reqs   []wire.Request
			}{
				{'r', []wire.Request{find(tb), watch(tb), scan(tb)}},
				{'i', []wire.Request{insert(tb)}},
				{'n', []wire.Request{incr(tb, "probe")}},
				{'s', []wire.Request{set(tb, "zz.probe")}},
			}
			for _, p := range probes {
				wantOK := strings.IndexByte(w, p.letter) >= 0
				for _, req := range p.reqs {
					err := r.Check(&req)
					if gotOK := err == nil; gotOK != wantOK {
						t.Errorf("Role(%q).Check(%s) = %v, want allowed=%v", r, describe(req), err, wantOK)
					}
					if err != nil && !errors.Is(err, ErrForbidden) {
						t.Errorf("Role(%q).Check(%s) = %v, want an error wrapping ErrForbidden", r, describe(req), err)
					}
				}
			}
		}
		allowed := map[wire.Op]bool{}
		for _, o := range wantOps[r] {
			allowed[o] = true
		}
		for _, o := range []wire.Op{wire.OpChanges, wire.OpMerge, wire.OpStatus, wire.OpDump, wire.OpCursor, wire.OpCheckpoint} {
			req := op(o)
			err := r.Check(&req)
			if gotOK := err == nil; gotOK != allowed[o] {
				t.Errorf("Role(%q).Check(%s) = %v, want allowed=%v", r, o, err, allowed[o])
			}
		}
	}
}

// TestOnlyBackupdMerges: merge can write arbitrary rows and states, so it
// belongs to replication alone (SPEC §4).
func TestOnlyBackupdMerges(t *testing.T) {
	for _, r := range Roles() {
		req := op(wire.OpMerge)
		err := r.Check(&req)
		if r == BackupD && err != nil {
			t.Errorf("BackupD.Check(merge) = %v, want nil", err)
		}
		if r != BackupD && !errors.Is(err, ErrForbidden) {
			t.Errorf("Role(%q).Check(merge) = %v, want ErrForbidden", r, err)
		}
	}
}

// TestOnlySpamdAndAdminSetVerdicts: the verdict decides whether smtpd
// answers 250 or 550 (SPEC §5), so only the decider and the operator set it.
func TestOnlySpamdAndAdminSetVerdicts(t *testing.T) {
	for _, r := range Roles() {
		req := set(model.Receive, model.ColVerdict)
		err := r.Check(&req)
		want := r == SpamD || r == Admin
		if got := err == nil; got != want {
			t.Errorf("Role(%q).Check(set receive verdict) = %v, want allowed=%v", r, err, want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles() {
		got, err := ParseRole(string(r))
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v, want %q, nil", r, got, err, r)
		}
	}
	for _, in := range []string{"", "root", "Admin", "SMTPD", " smtpd", "smtpd ", "pop3d", "imapd", "smsd"} {
		got, err := ParseRole(in)
		if err == nil {
			t.Errorf("ParseRole(%q) = %q, nil, want an error", in, got)
			continue
		}
		if got != "" {
			t.Errorf("ParseRole(%q) = %q, %v, want an empty role with the error", in, got, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseRole(%q) error %q does not name the input", in, err)
		}
	}
}

func TestRolesDistinct(t *testing.T) {
	seen := map[Role]bool{}
	for _, r := range Roles() {
		if seen[r] {
			t.Errorf("Roles() lists %q twice", r)
		}
		seen[r] = true
	}
}

// newKey writes a real key pair to dir/name and dir/name.pub and returns
// its public key and the path of the public key file.
func newKey(t *testing.T, dir, name string) (wire.PublicKey, string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := wire.WriteKeyFiles(path, kp); err != nil {
		t.Fatal(err)
	}
	return kp.Public, path + ".pub"
}

// writeClients writes a clients file at path.
func writeClients(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadClients(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	smtpd, _ := newKey(t, keys, "smtpd")
	spamd, _ := newKey(t, keys, "spamd")
	backupd, _ := newKey(t, keys, "backupd")
	pop3d, _ := newKey(t, filepath.Join(dir, "etc", "keys"), "pop3d")
	admin, adminPub := newKey(t, t.TempDir(), "dbctl") // elsewhere: an absolute path
	unlisted, _ := newKey(t, keys, "unlisted")

	// The clients file sits in its own folder, and the test runs in the
	// package folder: relative key paths must be read from the file's
	// folder.
	path := filepath.Join(dir, "etc", "clients")
	writeClients(t, path,
		"# twinmx dbd clients: ROLE PATH-TO-PUBKEY",
		"",
		"smtpd ../keys/smtpd.pub",
		"   # an indented comment",
		"spamd\t../keys/spamd.pub   ",
		"  backupd   ../keys/backupd.pub\r", // CRLF line ending
		"\t",
		"mailbox keys/pop3d.pub",
		"admin "+adminPub,
		"smtpd ../keys/smtpd.pub", // listed twice with the same role: harmless
		"#admin ../keys/unlisted.pub",
	)
	c, err := LoadClients(path)
	if err != nil {
		t.Fatalf("LoadClients: %v", err)
	}
	if got, want := c.Len(), 5; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	for _, w := range []struct {
		key  wire.PublicKey
		role Role
	}{{smtpd, SMTPD}, {spamd, SpamD}, {backupd, BackupD}, {pop3d, Mailbox}, {admin, Admin}} {
		if got, ok := c.Lookup(w.key); !ok || got.Role != w.role {
			t.Errorf("Lookup(%s) = %+v, %v, want %q, true", w.key, got, ok, w.role)
		}
	}
	if got, ok := c.Lookup(unlisted); ok {
		t.Errorf("Lookup(unlisted key) = %+v, true, want not listed", got)
	}
	if got, ok := c.Lookup(wire.PublicKey{}); ok {
		t.Errorf("Lookup(zero key) = %+v, true, want not listed", got)
	}
}

// TestLoadClientsRelativeFile: a clients file named by a relative path
// still resolves key paths against its own folder.
func TestLoadClientsRelativeFile(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKey(t, filepath.Join(dir, "conf", "keys"), "smtpd")
	writeClients(t, filepath.Join(dir, "conf", "clients"), "smtpd keys/smtpd.pub")
	t.Chdir(dir)
	c, err := LoadClients(filepath.Join("conf", "clients"))
	if err != nil {
		t.Fatalf("LoadClients(conf/clients): %v", err)
	}
	if got, ok := c.Lookup(key); !ok || got.Role != SMTPD {
		t.Errorf("Lookup(smtpd key) = %+v, %v, want smtpd, true", got, ok)
	}
}

func TestLoadClientsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients")
	writeClients(t, path, "# nobody yet", "")
	c, err := LoadClients(path)
	if err != nil {
		t.Fatalf("LoadClients(comments only): %v", err)
	}
	if c.Len() != 0 {
		t.Errorf("Len() = %d, want 0", c.Len())
	}
}

func TestLoadClientsMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-clients")
	c, err := LoadClients(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadClients(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
	if c != nil {
		t.Errorf("LoadClients(missing) returned clients with the error")
	}
}

func TestLoadClientsErrors(t *testing.T) {
	dir := t.TempDir()
	newKey(t, dir, "smtpd")
	newKey(t, dir, "spamd")
	writeClients(t, filepath.Join(dir, "notakey"), "hello")
	secret, err := os.ReadFile(filepath.Join(dir, "smtpd"))
	if err != nil {
		t.Fatal(err)
	}
	_, secretLine, _ := strings.Cut(strings.TrimSpace(string(secret)), "\n")
	tests := []struct {
		name    string
		lines   []string
		line    int      // the line the error must name
		want    []string // substrings of the error
		wantIs  error    // if set, errors.Is(err, wantIs)
		wantNot string   // a substring the error must not hold
	}{
		{
			name:  "bad role",
			lines: []string{"# c", "root smtpd.pub"},
			line:  2, want: []string{"unknown role", `"root"`},
		},
		{
			name:  "role case matters",
			lines: []string{"SMTPD smtpd.pub"},
			line:  1, want: []string{"unknown role"},
		},
		{
			name:  "missing key file",
			lines: []string{"smtpd smtpd.pub", "", "spamd nope.pub"},
			line:  3, want: []string{"nope.pub"}, wantIs: fs.ErrNotExist,
		},
		{
			name:  "secret key instead of public",
			lines: []string{"smtpd smtpd"},
			line:  1, wantIs: wire.ErrBadKey,
			wantNot: secretLine, // the error must not leak the secret key
		},
		{
			name:  "not a key file",
			lines: []string{"smtpd notakey"},
			line:  1, wantIs: wire.ErrBadKey,
		},
		{
			name:  "role only",
			lines: []string{"smtpd"},
			line:  1, want: []string{`want "ROLE PATH-TO-PUBKEY [not-after=WHEN]"`},
		},
		{
			name:  "three fields",
			lines: []string{"# a", "# b", "# c", "smtpd smtpd.pub extra"},
			line:  4, want: []string{`want "ROLE PATH-TO-PUBKEY [not-after=WHEN]"`},
		},
		{
			name:  "trailing comment is not a comment",
			lines: []string{"smtpd smtpd.pub # the mx"},
			line:  1, want: []string{`want "ROLE PATH-TO-PUBKEY [not-after=WHEN]"`},
		},
		{
			name:  "same key two roles",
			lines: []string{"smtpd smtpd.pub", "spamd spamd.pub", "admin smtpd.pub"},
			line:  3, want: []string{"two roles", "smtpd", "admin"},
		},
		{
			name:  "same key two roles by another path",
			lines: []string{"mailbox ./smtpd.pub", "notify " + filepath.Join(dir, "smtpd.pub")},
			line:  2, want: []string{"two roles", "mailbox", "notify"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "clients-"+strings.ReplaceAll(tt.name, " ", "-"))
			writeClients(t, path, tt.lines...)
			c, err := LoadClients(path)
			if err == nil {
				t.Fatalf("LoadClients(%q) = %d clients, nil; want an error", tt.lines, c.Len())
			}
			if c != nil {
				t.Errorf("LoadClients(%q) returned clients with the error", tt.lines)
			}
			msg := err.Error()
			if at := fmt.Sprintf("%s:%d: ", path, tt.line); !strings.Contains(msg, at) {
				t.Errorf("LoadClients(%q) = %q, want the line %q", tt.lines, msg, at)
			}
			if n := strings.Count(msg, path+":"); n != 1 {
				t.Errorf("LoadClients(%q) = %q, want exactly one problem, got %d", tt.lines, msg, n)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("LoadClients(%q) = %q, want it to contain %q", tt.lines, msg, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("LoadClients(%q) = %v, want an error wrapping %v", tt.lines, err, tt.wantIs)
			}
			if tt.wantNot != "" && strings.Contains(msg, tt.wantNot) {
				t.Errorf("LoadClients(%q) = %q, must not contain %q", tt.lines, msg, tt.wantNot)
			}
		})
	}
}

// TestLoadClientsAllProblems: one load reports every bad line, so an
// operator fixes the file in one pass.
func TestLoadClientsAllProblems(t *testing.T) {
	dir := t.TempDir()
	newKey(t, dir, "smtpd")
	path := filepath.Join(dir, "clients")
	writeClients(t, path,
		"# clients",         // 1
		"smtpd smtpd.pub",   // 2 fine
		"root smtpd.pub",    // 3 bad role
		"",                  // 4
		"spamd missing.pub", // 5 missing key file
		"backupd",           // 6 malformed
		"admin smtpd.pub",   // 7 second role for the smtpd key
		"mailbox smtpd.pub", // 8 third role for the smtpd key
	)
	_, err := LoadClients(path)
	if err == nil {
		t.Fatal("LoadClients = nil error, want five problems")
	}
	msg := err.Error()
	for _, n := range []int{3, 5, 6, 7, 8} {
		if at := fmt.Sprintf("%s:%d: ", path, n); !strings.Contains(msg, at) {
			t.Errorf("LoadClients error %q does not report line %d", msg, n)
		}
	}
	for _, n := range []int{1, 2, 4} {
		if at := fmt.Sprintf("%s:%d: ", path, n); strings.Contains(msg, at) {
			t.Errorf("LoadClients error %q reports good line %d", msg, n)
		}
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadClients error %v does not wrap fs.ErrNotExist for line 5", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 5 {
		t.Errorf("LoadClients error is not five joined problems: %v", err)
	}
}

func TestNewClients(t *testing.T) {
	a, _ := newKey(t, t.TempDir(), "a")
	b, _ := newKey(t, t.TempDir(), "b")
	cc, _ := newKey(t, t.TempDir(), "c")
	m := map[wire.PublicKey]Client{a: {Role: SMTPD}, b: {Role: BackupD}}
	c := NewClients(m)
	if c.Len() != 2 {
		t.Errorf("Len() = %d, want 2", c.Len())
	}
	if r, ok := c.Lookup(a); !ok || r.Role != SMTPD {
		t.Errorf("Lookup(a) = %+v, %v, want smtpd, true", r, ok)
	}
	if r, ok := c.Lookup(b); !ok || r.Role != BackupD {
		t.Errorf("Lookup(b) = %+v, %v, want backupd, true", r, ok)
	}
	if r, ok := c.Lookup(cc); ok {
		t.Errorf("Lookup(unlisted) = %+v, true, want not listed", r)
	}
	// Clients is immutable: later changes to the map do not reach it.
	m[cc] = Client{Role: Admin}
	m[a] = Client{Role: Admin}
	delete(m, b)
	if r, _ := c.Lookup(a); r.Role != SMTPD {
		t.Errorf("after changing the map, Lookup(a) = %+v, want smtpd", r)
	}
	if _, ok := c.Lookup(cc); ok || c.Len() != 2 {
		t.Errorf("after changing the map, Len() = %d and Role(c) listed=%v, want 2, false", c.Len(), ok)
	}
	if empty := NewClients(nil); empty.Len() != 0 {
		t.Errorf("NewClients(nil).Len() = %d, want 0", empty.Len())
	}
}

// TestClientsNotAfter: a line may end with not-after=WHEN; a date means
// the key works through that whole day (UTC), an RFC 3339 time until that
// moment.
func TestClientsNotAfter(t *testing.T) {
	dir := t.TempDir()
	dev, _ := newKey(t, dir, "dev")
	ops, _ := newKey(t, dir, "ops")
	smtpd, _ := newKey(t, dir, "smtpd")
	path := filepath.Join(dir, "clients")
	writeClients(t, path,
		"spamd dev.pub not-after=2027-03-31",
		"admin\tops.pub\tnot-after=2027-03-31T18:00:00+02:00",
		"spamd dev.pub not-after=2027-03-31", // the same line twice: harmless
		"smtpd smtpd.pub",
	)
	c, err := LoadClients(path)
	if err != nil {
		t.Fatalf("LoadClients: %v", err)
	}
	endOfDay := time.Date(2027, 3, 31, 23, 59, 59, 999999999, time.UTC)
	for _, w := range []struct {
		key      wire.PublicKey
		role     Role
		notAfter time.Time
		name     string
	}{
		{dev, SpamD, endOfDay, "dev.pub"},
		{ops, Admin, time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC), "ops.pub"},
		{smtpd, SMTPD, time.Time{}, "smtpd.pub"},
	} {
		got, ok := c.Lookup(w.key)
		if !ok || got.Role != w.role || !got.NotAfter.Equal(w.notAfter) || got.Name != w.name {
			t.Errorf("Lookup(%s) = %+v, %v; want role %s, not-after %s, name %s", w.name, got, ok, w.role, w.notAfter, w.name)
		}
	}
	cl, _ := c.Lookup(dev)
	for _, tt := range []struct {
		now  time.Time
		want bool
	}{
		{time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC), false},
		{endOfDay, false},
		{endOfDay.Add(time.Nanosecond), true},
		{time.Date(2027, 4, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), false}, // 23:30 UTC on the 31st
	} {
		if got := cl.Expired(tt.now); got != tt.want {
			t.Errorf("Expired(%s) = %v, want %v", tt.now, got, tt.want)
		}
	}
	var never Client
	if never.Expired(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("a key without not-after expired")
	}
	got := c.WithNotAfter()
	if len(got) != 2 || got[0].Name != "ops.pub" || got[1].Name != "dev.pub" {
		t.Errorf("WithNotAfter() = %+v, want ops.pub then dev.pub", got)
	}
}

func TestClientsNotAfterErrors(t *testing.T) {
	dir := t.TempDir()
	newKey(t, dir, "dev")
	for _, tt := range []struct {
		name, line, want string
	}{
		{"not a date", "spamd dev.pub not-after=soon", `not-after "soon"`},
		{"no such day", "spamd dev.pub not-after=2027-02-30", `not-after "2027-02-30"`},
		{"empty", "spamd dev.pub not-after=", `not-after ""`},
		{"time without zone", "spamd dev.pub not-after=2027-03-31T18:00:00", "RFC 3339"},
		{"other field", "spamd dev.pub until=2027-03-31", "[not-after=WHEN]"},
		{"four fields", "spamd dev.pub not-after=2027-03-31 x", "[not-after=WHEN]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "clients")
			writeClients(t, path, "# c", tt.line)
			_, err := LoadClients(path)
			if err == nil || !strings.Contains(err.Error(), path+":2: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadClients(%q) = %v, want an error at line 2 containing %q", tt.line, err, tt.want)
			}
		})
	}
	t.Run("two not-after times", func(t *testing.T) {
		path := filepath.Join(dir, "clients")
		writeClients(t, path, "spamd dev.pub not-after=2027-03-31", "spamd dev.pub")
		_, err := LoadClients(path)
		if err == nil || !strings.Contains(err.Error(), path+":2: ") || !strings.Contains(err.Error(), "two not-after times (2027-03-31T23:59:59Z, never)") {
			t.Errorf("LoadClients = %v, want the second line refused for a second not-after", err)
		}
	})
}
