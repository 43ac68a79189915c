package test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// TestDifferentialDovecotPOP3 drives pop3d and Dovecot's POP3 server
// with one random script over raw TCP and compares what they answer. The
// same mails are in both: delivered to dbd as smtpd stores them, and
// written to Dovecot's Maildir, in the same order. The script is a
// series of sessions; each may send commands before logging in (CAPA,
// transaction commands, a PASS without USER, a wrong password), logs in
// (sometimes in lower case, sometimes pipelined), looks at the maildrop
// (STAT, LIST, UIDL), sends random STAT, LIST, UIDL, RETR, TOP, DELE,
// RSET, NOOP and CAPA commands — with message numbers in range, past the
// end, 0, negative, huge or not numbers, missing or extra arguments,
// lower-case verbs, over-long lines and pipelined groups — and ends with
// QUIT, a dropped connection or an over-long line. The next session's
// listing shows what the last one removed. A last session retrieves
// every remaining mail.
//
// Compared: each reply's status (+OK, -ERR, or the connection closed);
// STAT, LIST and RETR's sizes; LIST listings; RETR and TOP octets as
// sent (dot-stuffed); UIDL's shape (message numbers, the unique-id's
// syntax; the values differ by design). The differences pop3d keeps on
// purpose are allowed in diffAllowed, each with its reason
// (docs/pop3d.md "Compared with Dovecot").
//
// TWINMX_SEED replays a run; TWINMX_STEPS sets the number of random
// commands (default 150); TWINMX_DIFF_DUMP names a folder for both raw
// transcripts; TWINMX_DIFF_SCRIPT replays a script file (one command a
// line, as the dump shows them).
func TestDifferentialDovecotPOP3(t *testing.T) {
	needDovecotPOP3(t)
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("TWINMX_SEED"), 10, 64); err == nil {
		seed = v
	}
	steps := 150
	if v, err := strconv.Atoi(os.Getenv("TWINMX_STEPS")); err == nil && v > 0 {
		steps = v
	}
	t.Logf("TWINMX_SEED=%d TWINMX_STEPS=%d", seed, steps)
	mails := diffMails()
	short := shortSizes{}
	seen := map[int64]bool{}
	for _, m := range mails {
		size := int64(len(crlf(m))) // what both send
		if !bytes.HasSuffix(m, []byte("\n")) {
			size -= 2 // Dovecot does not count the CRLF it adds
			short[size] = true
		}
		if seen[size] {
			t.Fatalf("two mails of the differential have Dovecot size %d: make each size unique", size)
		}
		seen[size] = true
	}
	script := newPOPGen(seed, len(mails)).script(steps)
	if f := os.Getenv("TWINMX_DIFF_SCRIPT"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		script = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	}

	const user, pass = "alice", "alice password"
	daddr := startDovecotPOP3(t, user, pass, mails)
	s := newSite(t, "A", "")
	s.user(user, pass, "alice@x.example")
	ctx := ctxFor(t, time.Minute)
	for i, m := range mails { // one at a time: pop3d numbers mail in arrival order
		if _, err := s.deliver(ctx, "alice@x.example", m); err != nil {
			t.Fatalf("deliver mail %d: %v", i, err)
		}
	}
	p := s.startPOP3D("", "--max-auth-failures", "-1")

	limit := time.Now().Add(time.Duration(60+steps/5) * time.Second)
	theirs := runPOPScript(t, daddr, script, limit)
	ours := runPOPScript(t, p.addr, script, limit)
	if dir := os.Getenv("TWINMX_DIFF_DUMP"); dir != "" {
		dumpPOP(t, filepath.Join(dir, "dovecot.txt"), theirs)
		dumpPOP(t, filepath.Join(dir, "pop3d.txt"), ours)
		if err := os.WriteFile(filepath.Join(dir, "script.txt"), []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	var diffs []string
	for i := range script {
		if d := comparePOP(theirs[i], ours[i], short); d != "" {
			diffs = append(diffs, fmt.Sprintf("%d %q: %s", i, theirs[i].cmd, d))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("pop3d differs from Dovecot (TWINMX_SEED=%d TWINMX_STEPS=%d; %d differences):\n%s",
			seed, steps, len(diffs), strings.Join(diffs[:min(len(diffs), 20)], "\n"))
	}
}

// diffMails are the mails of the differential, each of a different size,
// so a listing tells which are left: mostly CRLF line ends (as smtpd
// stores mail), and some that only imported or APPENDed mail can be:
// LF-only, mixed, a bare CR, no line end at the end.
func diffMails() [][]byte {
	mails := [][]byte{
		[]byte("From: a@x.example\r\nSubject: plain\r\n\r\nhello\r\n"),
		[]byte("From: a@x.example\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading\r\nend\r\n"),
		[]byte("From: a@x.example\r\nSubject: empty body\r\n\r\n"),
		[]byte("From: a@x.example\r\nSubject: long line\r\n\r\n" + strings.Repeat("y", 3000) + "\r\n"),
		[]byte("From: a@x.example\r\nSubject: folded\r\n header\r\nX-Empty:\r\n\r\nline 1\r\n\r\nline 3\r\n.\r\nline 5\r\n"),
		[]byte("From: a@x.example\r\nSubject: header only, no body separator\r\n"),
	}
	mails = append(mails,
		[]byte("From: a@x.example\nSubject: LF only\n\n.\n..x\nend\n"),
		[]byte("From: a@x.example\r\nSubject: no final line end\r\n\r\nlast"),
		[]byte("From: a@x.example\r\nSubject: bare CR\r\n\r\na\rb\r\n\r\r\n"),
		[]byte("From: a@x.example\r\nSubject: mixed\r\n\r\ncrlf\r\nlf\n.x\r\n"),
		[]byte("From: a@x.example\r\nSubject: header only, without a line end"),
	)
	var b strings.Builder
	b.WriteString("From: a@x.example\r\nSubject: many lines\r\n\r\n")
	for i := range 300 {
		fmt.Fprintf(&b, "line %d of many%s\r\n", i, strings.Repeat(".", i%7))
	}
	mails = append(mails, []byte(b.String()))
	for i := range 15 {
		mails = append(mails, fmt.Appendf(nil, "From: b@x.example\r\nTo: alice@x.example\r\nSubject: filler %d\r\n\r\n%s\r\n", i, strings.Repeat("z", 10*i+1)))
	}
	return mails
}

// popGen makes the random script. It keeps a model of the maildrop (how
// many mails a session starts with, which it marked) only to pick
// message numbers that are mostly in range: both servers get the same
// numbers whatever the model says.
type popGen struct {
	r      *rand.Rand
	count  int          // mails at the start of the next session
	marked map[int]bool // marked in the current session
}

func newPOPGen(seed uint64, mails int) *popGen {
	return &popGen{r: rand.New(rand.NewPCG(seed, 110)), count: mails}
}

func (g *popGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// Script lines other than commands: "!drop" closes the connection without
// QUIT, "!new" opens the next session, "!pipe A\tB" sends the commands
// A and B in one write.
const (
	popDrop = "!drop"
	popNew  = "!new"
	popPipe = "!pipe "
)

// script returns the whole script: sessions of random commands until
// steps commands are sent, then one that retrieves every mail.
func (g *popGen) script(steps int) []string {
	var out []string
	for n := 0; n < steps; {
		sess := g.session()
		n += len(sess)
		out = append(out, sess...)
	}
	out = append(out, popNew, "USER alice", "PASS alice password", "STAT", "LIST", "UIDL")
	for i := 1; i <= g.count+1; i++ {
		out = append(out, fmt.Sprintf("RETR %d", i))
	}
	return append(out, "QUIT")
}

// session returns one session: "!new", commands, and its end.
func (g *popGen) session() []string {
	out := []string{popNew}
	g.marked = map[int]bool{}
	// At most 2 commands before the login, few of them bad: both
	// servers end a session after some number of bad commands.
	for range g.r.IntN(3) {
		out = append(out, g.pick("CAPA", "STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP",
			"PASS alice password", "USER", "capa"))
	}
	if g.r.IntN(6) == 0 {
		out = append(out, "USER alice", "PASS wrong password")
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice password"))
	switch g.r.IntN(6) {
	case 0:
		out = append(out, "user alice", "pass alice password")
	case 1:
		out = append(out, popPipe+"USER alice\tPASS alice password\tSTAT")
	case 2:
		out = append(out, "AUTH PLAIN "+plain)
	case 3:
		out = append(out, "AUTH", "auth plain", plain) // RFC 5034 §4: an empty challenge, then the response
	default:
		out = append(out, "USER alice", "PASS alice password")
	}
	out = append(out, "STAT", "LIST", "UIDL")
	// pop3d closes a session at its 10th bad command (docs/pop3d.md §5),
	// Dovecot later: at most 7 commands pop3d may find bad.
	bad := 0
	next := func() string {
		for {
			c := g.command()
			if !badCommand(c) {
				return c
			}
			if bad < 7 {
				bad++
				return c
			}
		}
	}
	for range 3 + g.r.IntN(12) {
		if g.r.IntN(8) == 0 {
			// Mostly a few commands in one write; sometimes many
			// (RFC 2449 §6.6: the client may send them all at once).
			group := make([]string, 2+g.r.IntN(2))
			if g.r.IntN(6) == 0 {
				group = make([]string, 20+g.r.IntN(40))
			}
			for i := range group {
				group[i] = next()
			}
			out = append(out, popPipe+strings.Join(group, "\t"))
			continue
		}
		out = append(out, next())
	}
	switch n := g.r.IntN(20); {
	case n < 12:
		out = append(out, g.pick("QUIT", "QUIT", "quit"))
		for k := range g.marked {
			if k <= g.count {
				g.count--
			}
		}
	case n < 17:
		out = append(out, popDrop)
	case n < 19:
		out = append(out, "NOOP "+strings.Repeat("x", 600)) // over-long: the connection ends, nothing is removed
	default:
		out = append(out, "LIST "+strings.Repeat("1", 300)) // over 255, under pop3d's 512
		out = append(out, popDrop)
	}
	return out
}

// badCommand reports whether pop3d counts cmd, in the TRANSACTION
// state, as a bad command.
func badCommand(cmd string) bool {
	c, err := pop3.Parse([]byte(cmd))
	return err != nil || c.Verb == pop3.USER || c.Verb == pop3.PASS || c.Verb == pop3.AUTH
}

// msg returns a message number argument: mostly in range, sometimes at
// or past the end, sometimes not a valid number at all.
func (g *popGen) msg() string {
	switch n := g.r.IntN(20); {
	case n < 13:
		return strconv.Itoa(1 + g.r.IntN(max(g.count, 1)))
	case n < 15:
		return strconv.Itoa(g.count + 1 + g.r.IntN(3))
	default:
		return g.pick("0", "-1", "4294967297", "2147483648", "99999999999999999999", "+1", "01", "1x", "x", "1.0")
	}
}

// command returns one random command of the TRANSACTION state.
func (g *popGen) command() string {
	switch n := g.r.IntN(100); {
	case n < 8:
		return g.pick("STAT", "stat", "STAT 1")
	case n < 20:
		return g.pick("LIST", "LIST ", "list ", "LIST ") + g.pick("", g.msg(), g.msg(), g.msg()+" 1")
	case n < 30:
		return g.pick("UIDL", "UIDL ", "uidl ") + g.pick("", g.msg(), g.msg())
	case n < 45:
		return g.pick("RETR ", "RETR ", "retr ") + g.pick(g.msg(), g.msg(), "", g.msg()+" 2")
	case n < 60:
		lines := g.pick("0", "1", "2", "3", "10", "1000", "-1", "4294967296", "99999999999999999999", "x")
		if g.r.IntN(8) == 0 {
			return "TOP " + g.msg()
		}
		return g.pick("TOP ", "top ") + g.msg() + " " + lines
	case n < 75:
		m := g.msg()
		if k, err := strconv.Atoi(m); err == nil && strconv.Itoa(k) == m {
			g.marked[k] = true
		}
		return g.pick("DELE ", "dele ") + m
	case n < 80:
		g.marked = map[int]bool{}
		return g.pick("RSET", "rset")
	case n < 88:
		return g.pick("NOOP", "noop", "NOOP x")
	case n < 92:
		return "CAPA"
	case n < 95:
		return g.pick("XTND", "APOP alice 0123456789abcdef", "USER alice", "PASS x", "AUTH")
	default:
		return g.pick("", " ", "STAT\x00", "LIST\t1", "RETR  1")
	}
}

// popReply is one command and what a server answered to it.
type popReply struct {
	cmd    string
	status string     // "+OK", "-ERR", "closed" (no reply: the connection ended), "skipped"
	first  string     // the status line
	body   []byte     // a multi-line reply's lines after the status line, as sent
	closed bool       // the server closed the connection after this reply
	parts  []popReply // a pipelined group's replies, one a command
}

// multiLine reports whether a +OK reply to cmd has a body, as a client
// that sent it reads RFC 1939 and RFC 2449: CAPA, LIST and UIDL without
// an argument, RETR and TOP.
func multiLine(cmd string) bool {
	verb, rest, _ := strings.Cut(cmd, " ")
	args := strings.Fields(rest)
	switch strings.ToUpper(verb) {
	case "CAPA":
		return true
	case "AUTH": // the mechanisms (RFC 5034 leaves a bare AUTH open; both list them)
		return len(args) == 0
	case "LIST", "UIDL":
		return len(args) == 0
	case "RETR", "TOP":
		return true
	}
	return false
}

// runPOPScript runs script at addr and returns one reply per script line
// (for "!pipe" the replies of its commands are joined into one).
func runPOPScript(t *testing.T, addr string, script []string, limit time.Time) []popReply {
	t.Helper()
	out := make([]popReply, 0, len(script))
	var nc net.Conn
	var r *bufio.Reader
	closed := true
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	for _, line := range script {
		switch {
		case line == popNew:
			if nc != nil {
				nc.Close()
			}
			var err error
			if nc, err = net.DialTimeout("tcp", addr, 10*time.Second); err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			nc.SetDeadline(limit)
			r = bufio.NewReader(nc)
			g, err := r.ReadString('\n')
			closed = err != nil || !strings.HasPrefix(g, "+OK")
			out = append(out, popReply{cmd: line, status: statusOf(g)})
			continue
		case line == popDrop:
			nc.Close()
			nc, closed = nil, true
			out = append(out, popReply{cmd: line, status: "+OK"})
			continue
		case closed:
			out = append(out, popReply{cmd: line, status: "skipped"})
			continue
		}
		cmds := []string{line}
		if rest, ok := strings.CutPrefix(line, popPipe); ok {
			cmds = strings.Split(rest, "\t")
		}
		var wire []byte
		for _, c := range cmds {
			wire = append(append(wire, c...), "\r\n"...)
		}
		if _, err := nc.Write(wire); err != nil {
			closed = true
			out = append(out, popReply{cmd: line, status: "closed"})
			continue
		}
		var parts []popReply
		for _, c := range cmds {
			one := readPOPReply(r, c)
			if time.Now().After(limit) {
				t.Fatalf("%s: the script ran out of time at %q", addr, line)
			}
			one.cmd = c
			parts = append(parts, one)
			if one.closed {
				break
			}
		}
		last := &parts[len(parts)-1]
		if !last.closed && strings.EqualFold(strings.TrimSpace(last.cmd), "QUIT") && last.status == "+OK" {
			last.closed = waitClosed(nc, r)
		}
		rep := parts[0]
		if len(cmds) > 1 {
			rep = popReply{cmd: line, parts: parts, closed: last.closed}
			for _, p := range parts {
				rep.status += p.status + " "
			}
		}
		closed = rep.closed
		out = append(out, rep)
	}
	return out
}

// readPOPReply reads the reply to cmd; a reply that does not come
// (EOF, reset) is "closed".
func readPOPReply(r *bufio.Reader, cmd string) popReply {
	first, err := r.ReadString('\n')
	if err != nil {
		return popReply{status: "closed", first: first, closed: true}
	}
	rep := popReply{status: statusOf(first), first: strings.TrimRight(first, "\r\n")}
	if rep.status != "+OK" || !multiLine(cmd) {
		return rep
	}
	for {
		l, err := r.ReadBytes('\n')
		if err != nil {
			rep.closed = true
			rep.body = append(rep.body, "(cut)"...)
			return rep
		}
		if string(l) == ".\r\n" {
			return rep
		}
		rep.body = append(rep.body, l...)
	}
}

// waitClosed reports whether the server closes the connection after
// QUIT's reply (RFC 1939 §6: it does).
func waitClosed(nc net.Conn, r *bufio.Reader) bool {
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.ReadByte()
	return errors.Is(err, io.EOF) || err != nil && !isTimeoutErr(err)
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func statusOf(line string) string {
	switch {
	case strings.HasPrefix(line, "+OK"):
		return "+OK"
	case strings.HasPrefix(line, "-ERR"):
		return "-ERR"
	case line == "":
		return "closed"
	}
	return "other: " + strings.TrimRight(line, "\r\n")
}

// comparePOP returns how ours differs from theirs, or "".
func comparePOP(theirs, ours popReply, short shortSizes) string {
	if len(theirs.parts) == 0 && len(ours.parts) == 0 {
		return compareReply(theirs, ours, short)
	}
	for i := range min(len(theirs.parts), len(ours.parts)) {
		if d := compareReply(theirs.parts[i], ours.parts[i], short); d != "" {
			return fmt.Sprintf("pipelined %q: %s", theirs.parts[i].cmd, d)
		}
	}
	if len(theirs.parts) != len(ours.parts) {
		return fmt.Sprintf("pipelined: dovecot answered %d commands, pop3d %d", len(theirs.parts), len(ours.parts))
	}
	return ""
}

// compareReply compares the replies to one command.
func compareReply(theirs, ours popReply, short shortSizes) string {
	if theirs.status != ours.status || theirs.closed != ours.closed {
		if diffAllowed(theirs, ours) != "" {
			return ""
		}
		return fmt.Sprintf("dovecot %q (closed %v), pop3d %q (closed %v)", theirs.first, theirs.closed, ours.first, ours.closed)
	}
	if theirs.status != "+OK" {
		return ""
	}
	verb, rest, _ := strings.Cut(theirs.cmd, " ")
	args := strings.Fields(rest)
	switch strings.ToUpper(verb) {
	case "STAT":
		if !short.sameTotal(fields(theirs.first, 1, 3), fields(ours.first, 1, 3)) {
			return fmt.Sprintf("STAT: dovecot %q, pop3d %q", theirs.first, ours.first)
		}
	case "LIST":
		if len(args) > 0 {
			if !short.sameScan(fields(theirs.first, 1, 3), fields(ours.first, 1, 3)) {
				return fmt.Sprintf("LIST: dovecot %q, pop3d %q", theirs.first, ours.first)
			}
			break
		}
		a, b := strings.Split(string(theirs.body), "\r\n"), strings.Split(string(ours.body), "\r\n")
		same := len(a) == len(b)
		for i := 0; same && i < len(a); i++ {
			same = short.sameScan(a[i], b[i])
		}
		if !same {
			return fmt.Sprintf("LIST listing: dovecot %q, pop3d %q", theirs.body, ours.body)
		}
	case "UIDL":
		if len(args) > 0 {
			if d := uidlShape(theirs.first[3:], ours.first[3:]); d != "" {
				return "UIDL: " + d
			}
		} else if d := uidlShape(string(theirs.body), string(ours.body)); d != "" {
			return "UIDL listing: " + d
		}
	case "RETR", "TOP":
		if strings.ToUpper(verb) == "RETR" && !short.sameScan("1 "+fields(theirs.first, 1, 2), "1 "+fields(ours.first, 1, 2)) {
			return fmt.Sprintf("RETR size: dovecot %q, pop3d %q", theirs.first, ours.first)
		}
		if !bytes.Equal(theirs.body, ours.body) {
			return fmt.Sprintf("%s octets differ: dovecot %d octets %q, pop3d %d octets %q", verb,
				len(theirs.body), clip(theirs.body), len(ours.body), clip(ours.body))
		}
	}
	return ""
}

// shortSizes holds the sizes Dovecot reports for the mails that do not
// end in a line end. Both servers send such a mail with a CRLF added
// before the terminating "."; pop3d counts it in LIST, STAT and RETR's
// "+OK n octets" (the octets it sends, RFC 1939 §11; docs/pop3d.md §4),
// Dovecot does not. Every mail's size is unique, so the size tells the
// mail.
type shortSizes map[int64]bool

// size reports whether pop3d's size ours is Dovecot's theirs.
func (s shortSizes) size(theirs, ours string) bool {
	a, errA := strconv.ParseInt(theirs, 10, 64)
	b, errB := strconv.ParseInt(ours, 10, 64)
	return errA == nil && errB == nil && (a == b || b == a+2 && s[a])
}

// sameScan compares scan lines "n size".
func (s shortSizes) sameScan(theirs, ours string) bool {
	if theirs == ours {
		return true
	}
	na, a, _ := strings.Cut(theirs, " ")
	nb, b, _ := strings.Cut(ours, " ")
	return na == nb && s.size(a, b)
}

// sameTotal compares STAT's "count total".
func (s shortSizes) sameTotal(theirs, ours string) bool {
	na, a, _ := strings.Cut(theirs, " ")
	nb, b, _ := strings.Cut(ours, " ")
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	d := y - x
	return na == nb && errA == nil && errB == nil && d >= 0 && d%2 == 0 && d/2 <= int64(len(s))
}

// diffAllowed returns why pop3d may answer cmd differently from Dovecot
// (docs/pop3d.md "Compared with Dovecot"), or "" if it may not.
func diffAllowed(theirs, ours popReply) string {
	cmd := theirs.cmd
	verb, rest, _ := strings.Cut(cmd, " ")
	args := strings.Fields(rest)
	switch {
	case len(cmd) > pop3.MaxLine && ours.status == "-ERR" && ours.closed:
		return "a command line over 512 octets ends the session (RFC 2449 §4: 255 octets at most); Dovecot reads longer lines"
	case strings.ContainsFunc(cmd, func(r rune) bool { return r < 0x20 || r == 0x7f }) && ours.status == "-ERR":
		return "a control character in a command is refused (RFC 1939 §3: printable ASCII); Dovecot ends the command at a NUL"
	case diffAllowedTop(theirs, ours):
		return "a TOP line count of 2^64 or more is every line (RFC 1939 §7 sets no bound); Dovecot refuses it"
	case theirs.status != "+OK" || ours.status != "-ERR" || ours.closed || theirs.closed:
		return ""
	case len(args) > 0 && slices.Contains([]string{"STAT", "NOOP", "RSET", "CAPA", "QUIT"}, strings.ToUpper(verb)):
		return "arguments to a command that takes none are refused; Dovecot ignores them"
	case strings.EqualFold(verb, "USER") && len(args) == 0:
		return "USER needs a name (RFC 1939 §7); Dovecot takes an empty one"
	}
	return ""
}

// diffAllowedTop reports whether Dovecot refuses TOP's line count as too
// large for its 64-bit number where pop3d reads it as "every line"
// (RFC 1939 §7 sets no bound).
func diffAllowedTop(theirs, ours popReply) bool {
	f := strings.Fields(theirs.cmd)
	if len(f) != 3 || !strings.EqualFold(f[0], "TOP") || theirs.status != "-ERR" || ours.status != "+OK" {
		return false
	}
	_, err := strconv.ParseUint(f[2], 10, 64)
	return errors.Is(err, strconv.ErrRange)
}

// uidlShape compares two UIDL listings (or one "n uid" line) by their
// message numbers; each unique-id must be 1-70 characters 0x21-0x7E
// (RFC 1939 §7).
func uidlShape(theirs, ours string) string {
	shape := func(s string) (string, error) {
		var nums []string
		if strings.TrimSpace(s) == "" {
			return "", nil
		}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				return "", fmt.Errorf("line %q", l)
			}
			for _, c := range []byte(f[1]) {
				if c < 0x21 || c > 0x7e {
					return "", fmt.Errorf("unique-id %q", f[1])
				}
			}
			if len(f[1]) > 70 {
				return "", fmt.Errorf("unique-id %q too long", f[1])
			}
			nums = append(nums, f[0])
		}
		return strings.Join(nums, " "), nil
	}
	a, errA := shape(theirs)
	b, errB := shape(ours)
	switch {
	case errB != nil:
		return fmt.Sprintf("pop3d: %v", errB)
	case errA != nil:
		return fmt.Sprintf("dovecot: %v", errA)
	case a != b:
		return fmt.Sprintf("message numbers: dovecot %s, pop3d %s", a, b)
	}
	return ""
}

// fields returns words [i, j) of a reply line.
func fields(line string, i, j int) string {
	f := strings.Fields(line)
	if len(f) < j {
		return line
	}
	return strings.Join(f[i:j], " ")
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "…"...)
	}
	return b
}

// dumpPOP writes a transcript (TWINMX_DIFF_DUMP) for reading a difference.
func dumpPOP(t *testing.T, path string, tr []popReply) {
	var b strings.Builder
	for i, e := range tr {
		fmt.Fprintf(&b, "C%03d: %q\n", i, e.cmd)
		for _, p := range append([]popReply{e}, e.parts...) {
			fmt.Fprintf(&b, "%s closed=%v\n%s", p.first, p.closed, p.body)
			if len(p.body) > 0 {
				b.WriteString(".\n")
			}
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}
