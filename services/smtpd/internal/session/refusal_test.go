package session

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/services/smtpd/internal/metrics"
)

// throwInDB is fakeDB that keeps the throw-ins of its store batches
// (stored) and those written on their own (alone).
type throwInDB struct {
	*fakeDB
	mu     sync.Mutex
	stored [][]byte
	alone  [][]byte
}

func (d *throwInDB) Batch(ctx context.Context, reqs []wire.Request) ([]wire.Result, error) {
	for _, r := range reqs {
		if r.Op == wire.OpFindOrInsert && r.Table == model.ThrowIn {
			d.mu.Lock()
			d.stored = append(d.stored, r.Content)
			d.mu.Unlock()
		}
	}
	return d.fakeDB.Batch(ctx, reqs)
}

func (d *throwInDB) FindOrInsert(ctx context.Context, t model.Table, content []byte) (uint64, bool, error) {
	if t == model.ThrowIn {
		d.mu.Lock()
		d.alone = append(d.alone, content)
		d.mu.Unlock()
	}
	return d.fakeDB.FindOrInsert(ctx, t, content)
}

// throwIns returns the throw-ins kept, parsed.
func (d *throwInDB) throwIns(t *testing.T) (stored, alone []model.Attempt) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	parse := func(cs [][]byte) []model.Attempt {
		var out []model.Attempt
		for _, c := range cs {
			a, err := model.ParseThrowIn(c)
			if err != nil {
				t.Fatalf("throw-in %q: %v", c, err)
			}
			out = append(out, a)
		}
		return out
	}
	return parse(d.stored), parse(d.alone)
}

// rawSMTP is a client that writes exact bytes and reads one reply at a
// time (go-smtp's client cannot send an empty message: its DATA writer
// ends one with CRLF . CRLF).
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSMTP {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawSMTP{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("220 ")
	return c
}

// expect reads one reply and fails unless it starts with prefix.
func (c *rawSMTP) expect(prefix string) string {
	c.t.Helper()
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			c.t.Fatalf("reading reply (want %q): got %q, %v", prefix, b.String(), err)
		}
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	if !strings.HasPrefix(b.String(), prefix) {
		c.t.Fatalf("reply %q, want prefix %q", b.String(), prefix)
	}
	return b.String()
}

// cmd writes s and expects a reply starting with prefix.
func (c *rawSMTP) cmd(s, prefix string) string {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(prefix)
}

// TestStoredMailIsJudged: every mail smtpd stores goes with a throw-in
// that names it, or spamd never judges it (judge skips an attempt
// without a mail: "the attempt never got to DATA") and its sender gets
// 451 at every retry. A message of 0 bytes (DATA and at once the end
// line) was stored with a throw-in without its mail key (the throw-in
// writes the key only for a message of some bytes); it is refused now:
// 550 5.6.0, nothing stored.
func TestStoredMailIsJudged(t *testing.T) {
	for _, tc := range []struct {
		name, data, reply string
	}{
		{"empty", ".\r\n", "550 5.6.0 "},
		{"empty line", "\r\n.\r\n", ""},
		{"mail", "Subject: s\r\n\r\nbody\r\n.\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := &throwInDB{fakeDB: &fakeDB{}}
			c := dialRaw(t, serveFake(t, db, metrics.New(prometheus.NewRegistry()), time.Now))
			c.cmd("EHLO client.test\r\n", "250")
			c.cmd("MAIL FROM:<a@sender.test>\r\n", "250 ")
			c.cmd("RCPT TO:<jo@example.org>\r\n", "250 ")
			c.cmd("DATA\r\n", "354 ")
			reply := c.cmd(tc.data, "")
			c.cmd("QUIT\r\n", "221 ")
			stored, _ := db.throwIns(t)
			if tc.reply != "" && len(stored) > 0 {
				t.Errorf("stored; want it refused, nothing stored")
			}
			if tc.reply == "" && len(stored) == 0 {
				t.Errorf("not stored")
			}
			for _, a := range stored {
				if !a.HasMail {
					t.Errorf("stored, but its throw-in names no mail (size %d): spamd never judges it", a.Size)
				}
			}
			if !strings.HasPrefix(reply, tc.reply) {
				t.Errorf("reply %q, want prefix %q", reply, tc.reply)
			}
		})
	}
}

// TestRefusedDataLeavesThrowIn: a transaction whose message is refused
// before it is stored (here a bare LF, a first line that continues no
// field, an empty message) still leaves its throw-in row, as every transaction
// that reaches RCPT does (docs/smtpd.md §4), with its number and
// recipients and no mail. Before, DATA marked the throw-in as sent with
// the mail, which never happened for these: the attempt (a smuggling
// attempt too) was in no throw-in.
func TestRefusedDataLeavesThrowIn(t *testing.T) {
	for _, data := range []string{"Subject: s\r\n\r\nbare\nLF\r\n.\r\n", " continued\r\nSubject: s\r\n\r\nbody\r\n.\r\n", ".\r\n"} {
		db := &throwInDB{fakeDB: &fakeDB{}}
		c := dialRaw(t, serveFake(t, db, metrics.New(prometheus.NewRegistry()), time.Now))
		c.cmd("EHLO client.test\r\n", "250")
		c.cmd("MAIL FROM:<a@sender.test>\r\n", "250 ")
		c.cmd("RCPT TO:<jo@example.org>\r\n", "250 ")
		c.cmd("DATA\r\n", "354 ")
		c.cmd(data, "550 5.6.0 ")
		c.cmd("QUIT\r\n", "221 ")
		stored, alone := db.throwIns(t)
		if len(stored) != 0 {
			t.Fatalf("%q: stored", data)
		}
		if len(alone) != 1 || alone[0].Attempt != 1 || len(alone[0].Rcpts) != 1 || alone[0].Rcpts[0] != "jo@example.org" || alone[0].HasMail {
			t.Errorf("%q: throw-ins %+v, want one of attempt 1 to jo@example.org without a mail", data, alone)
		}
	}
}
