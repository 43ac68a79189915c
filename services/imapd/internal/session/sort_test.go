package session

import (
	"testing"
	"time"
)

// TestBaseSubject follows RFC 5256 §2.1 step by step.
func TestBaseSubject(t *testing.T) {
	for _, c := range []struct {
		in, want string
		reply    bool
	}{
		{"hello", "hello", false},
		{"Re: hello", "hello", true},
		{"RE: re:  Fwd: hello", "hello", true},
		{"Re[2]: hello", "hello", true},
		{"[list] Re: hello", "hello", true},
		{"[list] [other] Re: hello", "hello", true},
		{"[list] hello", "hello", false},
		{"[list]", "[list]", false},    // (4): no blob removed that leaves nothing
		{"[a] [b]", "[b]", false},      // the last blob stays
		{"hello (fwd)", "hello", true}, // (2)
		{"hello (FWD) (fwd) ", "hello", true},
		{"[Fwd: Re: hello]", "hello", true}, // (6), then again from (2)
		{"Re: [fwd: [x] hello (fwd)]", "hello", true},
		{"\t hello \t world ", "hello world", false}, // (1)
		{"Regarding the plan", "Regarding the plan", false},
		{"Fwx: hello", "Fwx: hello", false},
		{"re:", "", true},
		{"", "", false},
		{"[unclosed hello", "[unclosed hello", false},
		{"Re : hello", "hello", true}, // subj-refwd allows WSP before ":"
	} {
		if got, reply := baseSubject(c.in); got != c.want || reply != c.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", c.in, got, reply, c.want, c.reply)
		}
	}
}

func TestCasemap(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"hello", "HeLLo"},
		{"über", "ÜBER"},
		{"über", "U\u0308ber"}, // decomposed
		{"ǆ", "ǅ"},             // title case, not upper case
	} {
		if casemap(c.a) != casemap(c.b) {
			t.Errorf("casemap(%q) = %q != casemap(%q) = %q", c.a, casemap(c.a), c.b, casemap(c.b))
		}
	}
	if got := casemap("a\xb1\xa4b"); got != "A\uFFFDB" {
		t.Errorf("casemap of a byte that is not UTF-8: %q", got)
	}
	if casemap("apple") >= casemap("Banana") {
		t.Error("ASCII order is not case-blind")
	}
}

func TestSortDate(t *testing.T) {
	for _, c := range []struct {
		date string
		want string // RFC 3339 in UTC; "" for no date
	}{
		{"Tue, 3 Nov 2026 00:00:00 +0000", "2026-11-03T00:00:00Z"},
		{"Mon, 2 Nov 2026 23:30:00 -0700", "2026-11-03T06:30:00Z"},
		{"Fri, 29 Jun 01 01:03:58 EST", "2001-06-29T06:03:58Z"},
		{"Sun, 21 Jul 2002 23:46:05", "2002-07-21T23:46:05Z"},
		{"Wed, 16 Aug 2000 17:38:13 -0400 (EDT)", "2000-08-16T21:38:13Z"},
		{"24 Jul 2002 12:15 +0100", "2002-07-24T11:15:00Z"},
		{"Wed, 24 Jul 0102 21:48:06 +1200", ""},
		{"Mon, 27 May 2002 10:28:3 +0200", ""},
		{"2002/09/14 Sat 02:29:32 CDT", ""},
		{"yesterday", ""},
	} {
		d, ok := sortDate([]byte("Subject: x\r\nDate: " + c.date + "\r\n\r\n"))
		got := ""
		if ok {
			got = d.Format(time.RFC3339)
		}
		if got != c.want {
			t.Errorf("sortDate(%q) = %q, want %q", c.date, got, c.want)
		}
	}
	if _, ok := sortDate([]byte("Subject: x\r\n\r\n")); ok {
		t.Error("a date without a Date field")
	}
}

// FuzzSortKeys: the base subject, the lenient date and the message IDs
// of any header text: no panic, a base subject is its own base subject,
// and a date read is a real date in UTC.
func FuzzSortKeys(f *testing.F) {
	for _, s := range []string{"Re: [fwd: [x] hello (fwd)]", "[a] [b]", "re:", "Fri, 29 Jun 01 01:03:58 EST",
		"<a@b> <\"from <c@d>", "Mon, 2 Nov 2026 23:30:00 -0700 (MST)", "[Fwd: [Fwd: ]]", "\xff\xfe (fwd)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, _ := baseSubject(s)
		if again, _ := baseSubject(base); again != base {
			t.Fatalf("baseSubject(%q) = %q, whose base subject is %q", s, base, again)
		}
		_ = casemap(base)
		if d, ok := sortDate([]byte("Date: " + s + "\r\n\r\n")); ok && (d.Location() != time.UTC || d.Year() < 1000) {
			t.Fatalf("sortDate(%q) = %v", s, d)
		}
		for _, id := range msgIDs(s) {
			if len(id) < 3 || id[0] != '<' || id[len(id)-1] != '>' {
				t.Fatalf("msgIDs(%q) gave %q", s, id)
			}
		}
	})
}
