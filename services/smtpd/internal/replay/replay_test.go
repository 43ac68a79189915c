package replay

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/smtpd/internal/guard"
)

func TestFinalCodes(t *testing.T) {
	got := finalCodes([]byte("220 hi\r\n250-a\r\n250-b\r\n250 c\r\n354\r\n451 4.7.1 x\r\n550 partial"))
	want := []int{220, 250, 354, 451}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

// TestPlayAgainstScriptedServer plays a recording against a server that
// answers differently at one point: the difference is reported.
func TestPlayAgainstScriptedServer(t *testing.T) {
	recs := []guard.Record{
		{Dir: guard.DirServer, Data: []byte("220 mx ESMTP\r\n")},
		{Dir: guard.DirClient, Data: []byte("EHLO c\r\n")},
		{Dir: guard.DirServer, Data: []byte("250-mx\r\n250 SIZE\r\n")},
		{Dir: guard.DirClient, Data: []byte("QUIT\r\n")},
		{Dir: guard.DirServer, Data: []byte("221 bye\r\n")},
	}
	for _, tc := range []struct {
		ehlo  string
		match bool
	}{{"250-x\r\n250 y\r\n", true}, {"502 no\r\n", false}} {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			buf := make([]byte, 100)
			b.Write([]byte("220 other\r\n"))
			b.Read(buf)
			b.Write([]byte(tc.ehlo))
			b.Read(buf)
			b.Write([]byte("221 bye\r\n"))
		}()
		res, err := Play(context.Background(), a, recs, 2*time.Second, nil)
		a.Close()
		if err != nil || res.Match() != tc.match {
			t.Errorf("ehlo reply %q: %+v %v, want match=%v", tc.ehlo, res, err, tc.match)
		}
	}
}

func TestStuff(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "\r\n.\r\n",
		"a\r\n":                 "a\r\n.\r\n",
		".\r\n..x\r\nb\r.c\r\n": "..\r\n...x\r\nb\r.c\r\n.\r\n",
		"no end":                "no end\r\n.\r\n",
	} {
		if got := string(Stuff([]byte(in))); got != want {
			t.Errorf("Stuff(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDataRef(t *testing.T) {
	m, r := model.KeyOf(model.Mail, []byte("m")), model.KeyOf(model.Received, []byte("r"))
	gm, gr, err := ParseDataRef([]byte(DataRef(m, r)))
	if err != nil || gm != m || gr != r {
		t.Fatalf("round trip: %v %v %v", gm, gr, err)
	}
	for _, bad := range []string{"", "mail=x received=y", "received=" + r.String() + " mail=" + m.String()} {
		if _, _, err := ParseDataRef([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte(MetaLine("s1", "127.0.0.1:1", time.Unix(0, 0)) + "twinmx-capture/1\nC 0 6 0\nQUIT\r\n\n"))
	f.Add([]byte("twinmx-capture/1\n"))
	f.Add([]byte("twinmx-session x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		meta, recs, err := Split(b)
		if err != nil {
			return
		}
		if bytes.Contains([]byte(meta), []byte("\n")) {
			t.Fatalf("meta %q holds a line end", meta)
		}
		_ = finalCodes(b)
		_ = recs
	})
}
