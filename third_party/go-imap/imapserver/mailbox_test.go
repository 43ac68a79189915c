package imapserver_test

// twinmx: guards a twinmx patch (TWINMX-PATCH.md): mailbox names in UTF-8
// once UTF8=ACCEPT or IMAP4rev2 is enabled.

import (
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// nameSession records the mailbox names (and LIST patterns) it is given,
// one "VERB name" a call; List and Status answer with the name given.
type nameSession struct {
	imapserver.Session // the rest: unused here
	mu                 sync.Mutex
	got                []string
}

func (s *nameSession) record(verb string, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, verb+" "+strings.Join(names, " | "))
}

func (s *nameSession) Close() error                              { return nil }
func (s *nameSession) Login(string, string) error                { return nil }
func (s *nameSession) Poll(*imapserver.UpdateWriter, bool) error { return nil }
func (s *nameSession) Unselect() error                           { return nil }
func (s *nameSession) Create(name string, _ *imap.CreateOptions) error {
	s.record("CREATE", name)
	return nil
}
func (s *nameSession) Delete(name string) error { s.record("DELETE", name); return nil }
func (s *nameSession) Rename(old, new string, _ *imap.RenameOptions) error {
	s.record("RENAME", old, new)
	return nil
}
func (s *nameSession) Subscribe(name string) error   { s.record("SUBSCRIBE", name); return nil }
func (s *nameSession) Unsubscribe(name string) error { s.record("UNSUBSCRIBE", name); return nil }
func (s *nameSession) Select(name string, _ *imap.SelectOptions) (*imap.SelectData, error) {
	s.record("SELECT", name)
	return &imap.SelectData{UIDValidity: 1, UIDNext: 1}, nil
}
func (s *nameSession) Status(name string, _ *imap.StatusOptions) (*imap.StatusData, error) {
	s.record("STATUS", name)
	n := uint32(0)
	return &imap.StatusData{Mailbox: name, NumMessages: &n}, nil
}
func (s *nameSession) List(w *imapserver.ListWriter, ref string, patterns []string, _ *imap.ListOptions) error {
	s.record("LIST", append([]string{ref}, patterns...)...)
	return w.WriteList(&imap.ListData{Delim: '/', Mailbox: "Entwürfe & Co"})
}
func (s *nameSession) Append(name string, r imap.LiteralReader, _ *imap.AppendOptions) (*imap.AppendData, error) {
	s.record("APPEND", name)
	buf := make([]byte, r.Size())
	_, err := r.Read(buf)
	return &imap.AppendData{}, err
}
func (s *nameSession) Copy(_ imap.NumSet, dest string) (*imap.CopyData, error) {
	s.record("COPY", dest)
	return nil, nil
}

// TestMailboxNamesUTF8: after ENABLE UTF8=ACCEPT a mailbox name is UTF-8
// on the wire both ways (RFC 6855 §3: the server accepts UTF-8 quoted
// mailbox names; RFC 9051 §5.1: names are UTF-8), so '&' is an '&' and
// not the start of modified UTF-7. The server still decoded every name as
// modified UTF-7: "Entwürfe & Co" was refused (the '&' opens no valid
// shift) and a listed one went out as "Entwürfe &- Co". Without ENABLE
// the same name travels as modified UTF-7.
func TestMailboxNamesUTF8(t *testing.T) {
	const name = "Entwürfe & Co"
	const mutf7 = "Entw&APw-rfe &- Co"
	steps := func(enable, wire string) []any {
		q := `"` + wire + `"`
		return []any{
			"a LOGIN u p\r\n",
			enable,
			"c CREATE " + q + "\r\n",
			"d DELETE " + q + "\r\n",
			"e RENAME " + q + " " + q + "\r\n",
			"f SUBSCRIBE " + q + "\r\n",
			"g UNSUBSCRIBE " + q + "\r\n",
			"h STATUS " + q + " (MESSAGES)\r\n",
			`i LIST "" ` + q + "\r\n",
			`j LSUB "" ` + q + "\r\n",
			"k APPEND " + q + " {5+}\r\nhello\r\n",
			"l SELECT " + q + "\r\n",
			"m COPY 1 " + q + "\r\n",
			"n EXAMINE " + q + "\r\n",
			"z LOGOUT\r\n",
		}
	}
	want := []string{
		"CREATE " + name, "DELETE " + name, "RENAME " + name + " | " + name,
		"SUBSCRIBE " + name, "UNSUBSCRIBE " + name, "STATUS " + name,
		"LIST  | " + name, "LIST  | " + name, "APPEND " + name,
		"SELECT " + name, "COPY " + name, "SELECT " + name,
	}
	for _, c := range []struct {
		label, enable, wire string
	}{
		{"UTF8=ACCEPT", "b ENABLE UTF8=ACCEPT\r\n", name},
		{"IMAP4rev1", "b NOOP\r\n", mutf7},
	} {
		t.Run(c.label, func(t *testing.T) {
			sess := &nameSession{}
			out := serveSession(t, sess, steps(c.enable, c.wire)...)
			if got := strings.Join(sess.got, "\n"); got != strings.Join(want, "\n") {
				t.Errorf("names the session got:\n%s\nwant:\n%s\n(server wrote %q)", got, strings.Join(want, "\n"), out)
			}
			for _, resp := range []string{
				`* STATUS "` + c.wire + `" (MESSAGES 0)`,
				`* LIST () "/" "` + c.wire + `"`,
				`* LSUB () "/" "` + c.wire + `"`,
			} {
				if !strings.Contains(out, resp+"\r\n") {
					t.Errorf("server wrote %q, want %s", out, resp)
				}
			}
		})
	}
}

// TestMailboxNameNotUTF8: with UTF8=ACCEPT enabled a name that is not
// UTF-8, or holds a control character RFC 6855 §3 excludes, is BAD; the
// session goes on.
func TestMailboxNameNotUTF8(t *testing.T) {
	sess := &nameSession{}
	out := serveSession(t, sess,
		"a LOGIN u p\r\n",
		"b ENABLE UTF8=ACCEPT\r\n",
		"c CREATE \"Entw\xfcrfe\"\r\n",
		"d CREATE \"a\x01b\"\r\n",
		"e CREATE \"a\u2028b\"\r\n",
		"f CREATE \"ok\"\r\n",
		"z LOGOUT\r\n",
	)
	for _, tag := range []string{"c", "d", "e"} {
		if !strings.Contains(out, "\r\n"+tag+" BAD ") {
			t.Errorf("CREATE %s: server wrote %q, want %s BAD", tag, out, tag)
		}
	}
	if got := strings.Join(sess.got, "\n"); got != "CREATE ok" {
		t.Errorf("names the session got: %q, want CREATE ok alone", got)
	}
}

// TestCommandFailsAfterLiteral: a command that fails after the server has
// read a literal argument (an invalid modified UTF-7 name, without ENABLE)
// is answered, and the rest of its line is discarded. The decoder took the
// CRLF that ends the literal's announcement for the end of the command, so
// nothing was discarded: the CRLF after the literal was read as the next
// command, which failed to parse, and the connection closed without a word.
// The same for a synchronizing literal, and for a failure with more
// arguments after the literal.
func TestCommandFailsAfterLiteral(t *testing.T) {
	sess := &nameSession{}
	out := serveSession(t, sess,
		"a LOGIN u p\r\n",
		"b CREATE {3+}\r\na&b\r\n",
		"c NOOP\r\n",
		"d CREATE {3}\r\n", "a&b\r\n",
		"e NOOP\r\n",
		"f RENAME {3+}\r\na&b \"x\"\r\n",
		"g CREATE ok\r\n",
		"z LOGOUT\r\n",
	)
	// BAD: a name that is not modified UTF-7 is the client's syntax error
	// (it was NO [SERVERBUG] before patch 21).
	for _, want := range []string{"b BAD ", "c OK ", "+ ", "d BAD ", "e OK ", "f BAD ", "g OK ", "z OK "} {
		if !strings.Contains(out, "\r\n"+want) {
			t.Errorf("server wrote %q, want a line %q", out, want)
		}
	}
	if got := strings.Join(sess.got, "\n"); got != "CREATE ok" {
		t.Errorf("names the session got: %q, want CREATE ok alone", got)
	}
}
