package test

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDifferentialDovecot (TEST-CATALOG 93) runs one IMAP command script
// against Dovecot and against imapd, each over an INBOX of the same
// corpus mails, with a raw line client, and compares every response line
// after normalise. The differences it tolerates are listed in
// docs/imapd.md ("Compared with Dovecot"); anything else fails the test.
func TestDifferentialDovecot(t *testing.T) {
	needDovecot(t)
	mails := pickDiffMails(t, loadCorpus(t))
	subj, from := searchTerms(t, mails)

	dc := startDovecot(t, mails)
	s := newSite(t)
	s.deliver(mails)

	script := diffScript(subj, from)
	theirs := runScript(t, "dovecot", dc.addr, dc.user, dc.pass, script)
	ours := runScript(t, "imapd", s.imapAddr, login, password, script)
	if diff := compareTranscripts(theirs, ours); diff != "" {
		t.Errorf("imapd differs from Dovecot after normalisation:\n%s", diff)
	}
}

// diffScript is the command script, without tags. {uidN} is the UID of
// message N in INBOX as the server reported it in an earlier FETCH, and
// {high} is a UID above every UID in INBOX (the servers number mails
// differently: docs/imapd.md §2).
func diffScript(subj, from string) []string {
	return []string{
		"SELECT INBOX",
		"FETCH 1:* (FLAGS UID RFC822.SIZE)",
		"FETCH 1:* ENVELOPE",
		"FETCH 1:* BODYSTRUCTURE",
		"FETCH 1:* BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]",
		"FETCH 1:* BODY.PEEK[1]",
		"FETCH 1:* BODY.PEEK[TEXT]<0.100>",
		"FETCH 1:3 BODY[1]", // sets \Seen
		"FETCH 4 BODY[TEXT]<0.100>",
		"SEARCH ALL",
		"SEARCH SUBJECT " + strconv.Quote(subj),
		"SEARCH FROM " + strconv.Quote(from),
		"SEARCH LARGER 4000",
		"SEARCH NOT SEEN",
		"SEARCH OR SUBJECT " + strconv.Quote(subj) + " FROM " + strconv.Quote(from),
		"SEARCH OR SEEN LARGER 8000",
		"SEARCH SEEN NOT LARGER 3000",
		"STORE 2:5 +FLAGS (\\Flagged)",
		"STORE 6 +FLAGS.SILENT (\\Answered \\Flagged)",
		"STORE 4 -FLAGS (\\Flagged)",
		"STORE 5 -FLAGS.SILENT (\\Flagged)",
		"STORE 7 +FLAGS (\\Deleted)",
		"STORE 1 FLAGS (\\Draft)",
		"FETCH 1:8 FLAGS",
		"SEARCH FLAGGED",
		"UID FETCH 1:* (FLAGS)",
		"UID FETCH * (FLAGS)",
		"UID FETCH {uid2}:{uid4} (FLAGS RFC822.SIZE)",
		"UID FETCH {high}:* (FLAGS)",
		"UID STORE {uid9} +FLAGS (\\Seen)",
		"UID STORE {uid10}:{uid11} +FLAGS.SILENT (\\Seen)",
		"UID SEARCH UNSEEN",
		"CREATE Archive",
		"COPY 1:3 Archive",
		"UID COPY {uid12} Archive",
		"MOVE 8:9 Archive",
		"UID MOVE {uid13} Archive",
		"EXPUNGE",
		"FETCH 1:* (FLAGS UID RFC822.SIZE)",
		"SEARCH ALL",
		"STATUS Archive (MESSAGES UNSEEN)",
		"SELECT Archive",
		"FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)",
		"FETCH 1:* BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]",
		"LOGOUT",
	}
}

// response is one server response: text parts and the literals between
// them (parts[i] is followed by lits[i]).
type response struct {
	parts []string
	lits  [][]byte
}

// exchange is one command and every response up to its tagged one.
type exchange struct {
	cmd  string
	sent string // cmd as sent, its tokens resolved (diffrand_test.go)
	resp []response
}

// rawSession dials addr, reads the greeting and logs in as user; the
// connection closes when the test ends, and within d of now in any case.
// do sends one tagged command and returns its responses up to the tagged
// one, handing each first line to observe (if not nil) as it comes.
func rawSession(t *testing.T, name, addr, user, pass string, d time.Duration, observe func(string)) (do func(tag, cmd string) []response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	r := bufio.NewReader(c)
	if _, err := readResponse(r); err != nil {
		t.Fatalf("%s: greeting: %v", name, err)
	}
	do = func(tag, cmd string) []response {
		if _, err := fmt.Fprintf(c, "%s %s\r\n", tag, cmd); err != nil {
			t.Fatalf("%s: %s: %v", name, cmd, err)
		}
		var out []response
		for {
			resp, err := readResponse(r)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, cmd, err)
			}
			out = append(out, resp)
			if observe != nil {
				observe(resp.parts[0])
			}
			if strings.HasPrefix(resp.parts[0], tag+" ") {
				return out
			}
		}
	}
	if resp := do("L", fmt.Sprintf("LOGIN %q %q", user, pass)); !strings.HasPrefix(resp[len(resp)-1].parts[0], "L OK") {
		t.Fatalf("%s: LOGIN: %q", name, resp[len(resp)-1].parts)
	}
	return do
}

// runScript logs in and runs script over a raw connection, and returns
// the transcript from the first command on (the greeting and the LOGIN
// answer carry capability lists and are not compared).
func runScript(t *testing.T, name, addr, user, pass string, script []string) []exchange {
	t.Helper()
	do := rawSession(t, name, addr, user, pass, 30*time.Second, nil)
	uids := map[int]int{} // INBOX message number → UID, from FETCH responses
	var out []exchange
	for i, cmd := range script {
		cmd = fillUIDs(t, cmd, uids)
		tag := fmt.Sprintf("T%03d", i)
		resp := do(tag, cmd)
		if i < 5 { // INBOX is selected and nothing expunged yet
			for _, rs := range resp {
				if m := fetchUIDRe.FindStringSubmatch(rs.parts[0]); m != nil {
					seq, _ := strconv.Atoi(m[1])
					uid, _ := strconv.Atoi(m[2])
					uids[seq] = uid
				}
			}
		}
		out = append(out, exchange{cmd: script[i], resp: resp})
	}
	return out
}

var (
	fetchUIDRe = regexp.MustCompile(`^\* (\d+) FETCH \(.*\bUID (\d+)`)
	templateRe = regexp.MustCompile(`\{(uid\d+|high)\}`)
)

func fillUIDs(t *testing.T, cmd string, uids map[int]int) string {
	return templateRe.ReplaceAllStringFunc(cmd, func(m string) string {
		name := m[1 : len(m)-1]
		if name == "high" {
			hi := 0
			for _, u := range uids {
				hi = max(hi, u)
			}
			return strconv.Itoa(hi + 100)
		}
		seq, _ := strconv.Atoi(strings.TrimPrefix(name, "uid"))
		u, ok := uids[seq]
		if !ok {
			t.Fatalf("no UID known for message %d in %q", seq, cmd)
		}
		return strconv.Itoa(u)
	})
}

// readResponse reads one response line with its literals.
func readResponse(r *bufio.Reader) (response, error) {
	var resp response
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return resp, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		n, ok := literalLen(line)
		if !ok {
			resp.parts = append(resp.parts, line)
			return resp, nil
		}
		if n > 1<<20 {
			return resp, fmt.Errorf("literal of %d bytes", n)
		}
		lit := make([]byte, n)
		if _, err := ioReadFull(r, lit); err != nil {
			return resp, err
		}
		resp.parts = append(resp.parts, line[:strings.LastIndexByte(line, '{')])
		resp.lits = append(resp.lits, lit)
	}
}

var literalRe = regexp.MustCompile(`\{(\d+)\}$`)

func literalLen(line string) (int, bool) {
	m := literalRe.FindStringSubmatch(line)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
