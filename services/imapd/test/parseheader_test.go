package test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/twinmx/twinmx/services/imapd/internal/mimetree"
)

// TestParseHeaderCorpus: mimetree.ParseHeader keeps only the envelope's
// and the MIME fields (so that a listing of ENVELOPE and BODYSTRUCTURE
// does not parse every Received and DKIM field); for every mail of the
// corpus, and every mail enclosed in one, the ENVELOPE from it is the one
// from all fields, and every part's Content-* fields read the same.
func TestParseHeaderCorpus(t *testing.T) {
	all := func(raw []byte) textproto.Header {
		var h textproto.Header
		mimetree.EachField(raw, func(_, field []byte) { h.AddRaw(field) })
		return h
	}
	envelope := func(h textproto.Header) string {
		b, err := json.Marshal(mimetree.Envelope(h))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mails, parts, enclosed := 0, 0, 0
	for _, raw := range loadCorpus(t) {
		mails++
		tree := mimetree.Parse(raw, mimetree.Limits{})
		var walk func(p *mimetree.Part, root bool)
		walk = func(p *mimetree.Part, root bool) {
			parts++
			full := all(raw[p.Start:p.BodyStart])
			if root {
				if got, want := envelope(p.Header), envelope(full); got != want {
					t.Fatalf("mail %d: ENVELOPE from ParseHeader\n%s\nfrom every field\n%s", mails, got, want)
				}
			}
			for f := full.Fields(); f.Next(); {
				if k := f.Key(); strings.HasPrefix(strings.ToLower(k), "content-") && p.Header.Get(k) != full.Get(k) {
					t.Fatalf("mail %d: %s reads %q from ParseHeader, %q from every field", mails, k, p.Header.Get(k), full.Get(k))
				}
			}
			if e := p.Enclosed(); e != nil && p.Kind == mimetree.Message {
				enclosed++
				walk(e, true)
				return
			}
			for _, c := range p.Parts {
				walk(c, false)
			}
		}
		walk(tree.Root, true)
	}
	t.Logf("%d mails, %d parts, %d enclosed mails", mails, parts, enclosed)
	if mails < 4000 || enclosed == 0 {
		t.Fatalf("%d mails, %d enclosed: the corpus did not load", mails, enclosed)
	}
}
