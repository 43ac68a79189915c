package pop3

import (
	"bufio"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Command
		wantErr error // nil, ErrUnknown, ErrTooLong, or errSyntax for any *SyntaxError
	}{
		{"quit", "QUIT", Command{Verb: QUIT}, nil},
		{"lower case", "quit", Command{Verb: QUIT}, nil},
		{"mixed case", "sTaT", Command{Verb: STAT}, nil},
		{"noop", "NOOP", Command{Verb: NOOP}, nil},
		{"rset", "RSET", Command{Verb: RSET}, nil},
		{"capa", "CAPA", Command{Verb: CAPA}, nil},
		{"stls", "STLS", Command{Verb: STLS}, nil},
		{"quit with argument", "QUIT now", Command{}, errSyntax},
		{"list all", "LIST", Command{Verb: LIST}, nil},
		{"list one", "LIST 12", Command{Verb: LIST, Msg: 12}, nil},
		{"list zero", "LIST 0", Command{}, errSyntax},
		{"list negative", "LIST -1", Command{}, errSyntax},
		{"list two", "LIST 1 2", Command{}, errSyntax},
		{"list trailing space", "LIST 3 ", Command{Verb: LIST, Msg: 3}, nil},
		{"uidl all", "UIDL", Command{Verb: UIDL}, nil},
		{"uidl one", "UIDL 7", Command{Verb: UIDL, Msg: 7}, nil},
		{"retr", "RETR 1", Command{Verb: RETR, Msg: 1}, nil},
		{"retr leading zeros", "RETR 007", Command{Verb: RETR, Msg: 7}, nil},
		{"retr no number", "RETR", Command{}, errSyntax},
		{"retr hex", "RETR 0x1", Command{}, errSyntax},
		{"retr huge", "RETR 99999999999", Command{}, errSyntax},
		{"retr max", "RETR 2147483647", Command{Verb: RETR, Msg: MaxNumber}, nil},
		{"retr max+1", "RETR 2147483648", Command{}, errSyntax},
		{"dele", "DELE 2", Command{Verb: DELE, Msg: 2}, nil},
		{"top", "TOP 1 10", Command{Verb: TOP, Msg: 1, Lines: 10}, nil},
		{"top zero lines", "TOP 1 0", Command{Verb: TOP, Msg: 1, Lines: 0}, nil},
		{"top one argument", "TOP 1", Command{}, errSyntax},
		{"top negative lines", "TOP 1 -5", Command{}, errSyntax},
		{"user", "USER alice", Command{Verb: USER, Arg: "alice"}, nil},
		{"user none", "USER", Command{}, errSyntax},
		{"user two words", "USER alice bob", Command{}, errSyntax},
		{"pass", "PASS secret", Command{Verb: PASS, Arg: "secret"}, nil},
		{"pass with spaces", "PASS correct horse  battery ", Command{Verb: PASS, Arg: "correct horse  battery "}, nil},
		{"pass utf-8", "PASS pässwört", Command{Verb: PASS, Arg: "pässwört"}, nil},
		{"pass empty", "PASS ", Command{}, errSyntax},
		{"pass none", "PASS", Command{}, errSyntax},
		{"pass nul", "PASS a\x00b", Command{}, errSyntax},
		{"auth bare", "AUTH", Command{Verb: AUTH}, nil},
		{"auth plain", "AUTH plain", Command{Verb: AUTH, Arg: "PLAIN"}, nil},
		{"auth plain initial", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", Command{Verb: AUTH, Arg: "PLAIN", Initial: "AGFsaWNlAHNlY3JldA==", HasInitial: true}, nil},
		{"auth plain empty initial", "AUTH PLAIN =", Command{Verb: AUTH, Arg: "PLAIN", Initial: "=", HasInitial: true}, nil},
		{"auth bad base64", "AUTH PLAIN a*b", Command{}, errSyntax},
		{"auth bad mechanism", "AUTH PL@IN", Command{}, errSyntax},
		{"auth three words", "AUTH PLAIN x y", Command{}, errSyntax},
		{"unknown", "HELO", Command{}, ErrUnknown},
		{"apop is not offered", "APOP a b", Command{}, ErrUnknown},
		{"empty", "", Command{}, ErrUnknown},
		{"short keyword", "QU", Command{}, ErrUnknown},
		{"long keyword", "QUITS", Command{}, ErrUnknown},
		{"keyword with digit", "T0P 1 1", Command{}, ErrUnknown},
		{"leading space", " QUIT", Command{}, ErrUnknown},
		{"control character", "LIST\t1", Command{}, ErrUnknown},
		{"control character in argument", "USER a\x01", Command{}, errSyntax},
		{"too long", "USER " + strings.Repeat("a", MaxLine), Command{}, ErrTooLong},
		{"longest user name", "USER " + strings.Repeat("a", 256), Command{}, errSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			switch {
			case tt.wantErr == errSyntax:
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("Parse(%q) = %+v, %v; want a syntax error", tt.in, got, err)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("Parse(%q) = %+v, %v; want error %v", tt.in, got, err, tt.wantErr)
			case err == nil && got != tt.want:
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// errSyntax stands for any *SyntaxError in TestParse.
var errSyntax = errors.New("syntax error")

// TestParseNumberOverflow: a message number of ten digits that does not
// fit 32 bits is refused on every platform. With a 32-bit
// int (GOARCH=386, arm) number() wrapped: RETR 4294967297 read as RETR 1,
// DELE 4294967298 as DELE 2.
func TestParseNumberOverflow(t *testing.T) {
	for _, line := range []string{
		"RETR 4294967297", "DELE 4294967298", "LIST 4294967297", "UIDL 6442450945",
		"TOP 4294967297 0", "RETR 9999999999", "RETR 2147483648",
	} {
		if c, err := Parse([]byte(line)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", line, c)
		}
	}
	if c, err := Parse([]byte("RETR 2147483647")); err != nil || c.Msg != MaxNumber {
		t.Errorf("Parse(RETR 2147483647) = %+v, %v", c, err)
	}
}

// TestParseTopLargeLineCount: RFC 1939 §7 bounds TOP's line count only
// below (non-negative); a count past the body sends all of it. pop3d
// answered -ERR to TOP 1 4294967296, which Dovecot serves
// (TestDifferentialDovecotPOP3, seed 6). Counts past MaxNumber read as
// MaxNumber, without wrapping on a 32-bit int.
func TestParseTopLargeLineCount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"TOP 1 2147483647", MaxNumber},
		{"TOP 1 2147483648", MaxNumber},
		{"TOP 1 4294967296", MaxNumber},
		{"TOP 1 4294967297", MaxNumber},
		{"TOP 1 99999999999999999999999999999999", MaxNumber},
		{"TOP 1 000000000000000000000000000000005", 5},
	} {
		if c, err := Parse([]byte(tc.in)); err != nil || c.Lines != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want Lines %d", tc.in, c, err, tc.want)
		}
	}
	for _, in := range []string{"TOP 1 -1", "TOP 1 1x", "TOP 1 +1", "TOP 1 1.0"} {
		if c, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, c)
		}
	}
}

func TestReadLine(t *testing.T) {
	in := "QUIT\r\nLIST\n\r\nPASS a\rb\r\n" + strings.Repeat("x", MaxLine+1) + "\r\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 4096)
	for _, want := range []string{"QUIT", "LIST", "", "PASS a\rb"} {
		got, err := ReadLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	if got, err := ReadLine(r); !errors.Is(err, ErrTooLong) {
		t.Fatalf("ReadLine of a long line = %q, %v; want ErrTooLong", got, err)
	}
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 5000)), 1024)
	if got, err := ReadLine(r); !errors.Is(err, ErrTooLong) {
		t.Fatalf("ReadLine of a line longer than the buffer = %q, %v; want ErrTooLong", got, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"QUIT", "LIST 1", "TOP 1 0", "PASS a b", "AUTH PLAIN =", "USER x", "RETR 2147483647", "uidl"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := Parse(line)
		if err != nil {
			if c != (Command{}) {
				t.Fatalf("Parse(%q) returned %+v with error %v", line, c, err)
			}
			return
		}
		if len(line) > MaxLine {
			t.Fatalf("Parse accepted a %d-octet line", len(line))
		}
		switch c.Verb {
		case RETR, DELE, TOP:
			if c.Msg < 1 || c.Msg > MaxNumber {
				t.Fatalf("Parse(%q): message number %d out of range", line, c.Msg)
			}
		case LIST, UIDL:
			if c.Msg < 0 || c.Msg > MaxNumber {
				t.Fatalf("Parse(%q): message number %d out of range", line, c.Msg)
			}
		}
		if c.Lines < 0 {
			t.Fatalf("Parse(%q): negative line count", line)
		}
		// The numbers are the decimal arguments themselves (no wrap on a
		// 32-bit int).
		args := strings.Fields(string(line))[1:]
		if c.Msg > 0 && decimal(args[0]) != strconv.Itoa(c.Msg) {
			t.Fatalf("Parse(%q): message number %d", line, c.Msg)
		}
		if c.Verb == TOP && c.Lines < MaxNumber && decimal(args[1]) != strconv.Itoa(c.Lines) {
			t.Fatalf("Parse(%q): line count %d", line, c.Lines)
		}
		// A parsed command's keyword is the line's first word.
		if !strings.EqualFold(strings.SplitN(string(line), " ", 2)[0], string(c.Verb)) {
			t.Fatalf("Parse(%q) = verb %s", line, c.Verb)
		}
	})
}

// decimal returns s without leading zeros ("0" for zero).
func decimal(s string) string {
	if s = strings.TrimLeft(s, "0"); s == "" {
		return "0"
	}
	return s
}
