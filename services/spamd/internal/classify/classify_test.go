package classify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"testing"
)

const hamMail = "From: Alice Example <alice@example.org>\nSubject: minutes of the build meeting\nMessage-ID: <1@example.org>\nDate: Mon, 1 Jul 2002 10:00:00 +0000\n\nHi Bob,\nthe build broke again on the release branch; patch attached.\n"

const spamMail = "From: Best Deals <deals123@cheap-pills.biz>\nSubject: FREE VIAGRA!!! CLICK HERE\nContent-Type: text/html\n\n<html><body><font size=7>Buy cheap viagra now</font> <a href=\"http://198.51.100.7/buy\">click here</a> to remove</body></html>\n"

func TestTokens(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		not  []string
	}{
		{"subject and body", hamMail, []string{"s:minutes", "fd:example.org", "f:alice", "build", "p:build broke"}, nil},
		{"mbox line skipped", "From alice@x  Mon Jul  1 10:00:00 2002\n" + hamMail, []string{"s:minutes"}, []string{"alice@x"}},
		{"crlf", strings.ReplaceAll(hamMail, "\n", "\r\n"), []string{"s:minutes", "release"}, nil},
		{"html text and markup", spamMail, []string{"viagra", "tag:font", "attr:font:size", "url:#ip", "up:buy", "s:#caps"}, []string{"html"}},
		{"html comment hides word", "Content-Type: text/html\n\n<p>vi<!-- x -->agra</p>", []string{"viagra", "m:html:comment"}, nil},
		{"base64 decoded", "Content-Transfer-Encoding: base64\n\nbW9ydGdhZ2UgcmF0ZXM=\n", []string{"mortgage", "rates"}, nil},
		{"quoted-printable decoded", "Content-Transfer-Encoding: quoted-printable\n\nmort=\ngage r=61tes\n", []string{"mortgage", "rates"}, nil},
		{"multipart", "Content-Type: multipart/alternative; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nplain words\n--XX\nContent-Type: image/gif; name=a.gif\n\nGIF89a\n--XX--\n", []string{"plain", "words", "m:ct:image/gif", "m:ext:gif"}, []string{"gif89a"}},
		{"list headers ignored", "List-Id: <razor-users.example.sourceforge.net>\nSender: razor-users-admin@x\nSubject: hi\n\nbody text", []string{"body", "text"}, []string{"razor-users.example.sourceforge.net"}},
		{"no header", "just some words here", []string{"just", "some", "words", "here", "m:noheader"}, nil},
		{"long word", "\n\n" + strings.Repeat("a", 40), []string{"skip:x40"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkTokens(t, tt.name, tt.in, tt.want, tt.not)
			if got := Tokens([]byte(tt.in)); !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Errorf("Tokens(%q) not sorted and distinct: %q", tt.in, got)
			}
		})
	}
}

// trainSet is a small synthetic set with a clear signal on both sides.
func trainSet() []Doc {
	var docs []Doc
	for i := range 40 {
		docs = append(docs,
			Doc{Tokens: Tokens(fmt.Appendf(nil, "From: Dev %d <dev%d@example.org>\nSubject: build %d\n\nthe build log for commit %d is attached, patch review tomorrow", i, i, i, i)), Class: Ham},
			Doc{Tokens: Tokens(fmt.Appendf(nil, "From: Offer <x%d@deals.biz>\nSubject: cheap pills %d\n\nbuy cheap pills now, click here to remove %d, free viagra", i, i, i)), Class: Spam})
	}
	return docs
}

func TestScoreSeparates(t *testing.T) {
	m := Train(trainSet())
	ham := m.Score([]byte("From: Dev <dev@example.org>\nSubject: build\n\npatch review of the build log"))
	spam := m.Score([]byte("From: Offer <y@deals.biz>\nSubject: cheap pills\n\nfree viagra, click here, buy now"))
	if ham.Prob >= 0.2 || spam.Prob <= 0.8 {
		t.Fatalf("ham %.4f (chi %.4f lr %.4f), spam %.4f (chi %.4f lr %.4f): want ham < 0.2, spam > 0.8",
			ham.Prob, ham.Chi, ham.LR, spam.Prob, spam.Chi, spam.LR)
	}
	if r := spam.Reason(); !strings.ContainsAny(r, "(") || strings.Contains(r, "patch") {
		t.Errorf("spam reason %q: want spam clues, no ham clues", r)
	}
	if p := New().Score([]byte(spamMail)).Prob; p != 0.5 {
		t.Errorf("untrained model scores %v, want 0.5", p)
	}
}

func TestLearnUnlearn(t *testing.T) {
	m := Train(trainSet())
	before := m.Stats()
	m.LearnTokens(Tokens([]byte(spamMail)), Spam)
	if m.Stats() == before {
		t.Fatal("Learn changed nothing")
	}
	m.UnlearnTokens(Tokens([]byte(spamMail)), Spam)
	if after := m.Stats(); after != before {
		t.Errorf("learn+unlearn changed the counts: %+v before, %+v after", before, after)
	}
	m = New()
	// Unlearning what was never learnt must not wrap the counts.
	m.Unlearn([]byte(hamMail), Ham)
	if s := m.Stats(); s.Ham != 0 || s.Spam != 0 || s.Tokens != 0 {
		t.Errorf("stats after unlearning nothing = %+v, want zero", s)
	}
	m.Learn([]byte(hamMail), Ham)
	if s := m.Stats(); s.Ham != 1 || s.Tokens == 0 {
		t.Errorf("stats after learning one ham = %+v", s)
	}
}

func TestMarshalDeterministicRoundTrip(t *testing.T) {
	a, err := Train(trainSet()).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Train(trainSet()).MarshalBinary()
	if !bytes.Equal(a, b) {
		t.Fatal("the same training set gave different bytes")
	}
	m := New()
	if err := m.UnmarshalBinary(a); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	c, _ := m.MarshalBinary()
	if !bytes.Equal(a, c) {
		t.Fatal("round trip changed the bytes")
	}
	orig := Train(trainSet())
	if got, want := m.Score([]byte(spamMail)).Prob, orig.Score([]byte(spamMail)).Prob; got != want {
		t.Errorf("decoded model scores %v, original %v", got, want)
	}
}

// TestUnmarshalTamper flips every byte of a small model's blob: each must
// be refused, and the model must stay as it was.
func TestUnmarshalTamper(t *testing.T) {
	m := New()
	m.Learn([]byte(hamMail), Ham)
	m.Learn([]byte(spamMail), Spam)
	blob, _ := m.MarshalBinary()
	for i := range blob {
		bad := slices.Clone(blob)
		bad[i] ^= 0x41
		m2 := New()
		if err := m2.UnmarshalBinary(bad); !errors.Is(err, ErrBadModel) {
			t.Fatalf("byte %d flipped: err = %v, want ErrBadModel", i, err)
		}
		if m2.Stats() != (Stats{}) {
			t.Fatalf("byte %d flipped: model changed on error", i)
		}
	}
	for n := range len(blob) {
		if err := New().UnmarshalBinary(blob[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

func FuzzScore(f *testing.F) {
	f.Add([]byte(hamMail))
	f.Add([]byte(spamMail))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: message/rfc822\n\nSubject: inner\n\n--b\nContent-Transfer-Encoding: base64\n\n!!!\n--b"))
	f.Add([]byte("Subject: =?koi8-r?B?8NLJ18XU?=\nContent-Type: text/html; charset=\"\n\n<a href='http://u@h:80/%41'>&#x41;&amp;&bogus;&#99999999;</a><script>x"))
	f.Add([]byte("From \n"))
	f.Add([]byte{})
	m := Train(trainSet())
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := m.Score(raw)
		if !(r.Prob >= 0 && r.Prob <= 1) {
			t.Fatalf("Score(%q).Prob = %v, want in [0,1]", raw, r.Prob)
		}
		_ = r.Reason()
	})
}

func FuzzUnmarshal(f *testing.F) {
	m := New()
	m.Learn([]byte(hamMail), Ham)
	m.Learn([]byte(spamMail), Spam)
	blob, _ := m.MarshalBinary()
	f.Add(blob)
	empty, _ := New().MarshalBinary()
	f.Add(empty)
	f.Add([]byte("TMXC\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New()
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes must encode again and score without panicking.
		if _, err := m.MarshalBinary(); err != nil {
			t.Fatalf("MarshalBinary after UnmarshalBinary: %v", err)
		}
		m.Score([]byte(spamMail))
	})
}

// TestUnmarshalOldVersion: blobs of format versions 1 (no stacker, older
// tokens), 2 (no shape regression, 7 stacker inputs), 3 (no structure
// tokens, 8 stacker inputs), 4 (9 stacker inputs), 5 (no tail
// calibration), 6 (10 stacker inputs) and 7 (11) are refused cleanly, not
// misread.
func TestUnmarshalOldVersion(t *testing.T) {
	blob, _ := Train(trainSet()).MarshalBinary()
	for _, v := range []byte{1, 2, 3, 4, 5, 6, 7} {
		old := slices.Clone(blob[:len(blob)-4])
		old[len(magic)] = v
		old = binary.BigEndian.AppendUint32(old, crc32.Checksum(old, castagnoli))
		err := New().UnmarshalBinary(old)
		if !errors.Is(err, ErrBadModel) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", v)) {
			t.Fatalf("version %d blob: err = %v, want ErrBadModel naming the version", v, err)
		}
	}
}

// TestTrainedTamper is TestUnmarshalTamper for a trained model, whose blob
// carries a regression and a fitted stacker.
func TestTrainedTamper(t *testing.T) {
	m := Train(trainSet())
	if !m.mu.stack.fitted {
		t.Fatal("Train did not fit the stacker")
	}
	blob, _ := m.MarshalBinary()
	// The weights are the tail of the blob; flip bytes there and in the header.
	for _, i := range []int{0, 4, 5, len(blob) - 5, len(blob) - 12, len(blob) - 4 - 8*(nStack+nTail) - 1} {
		bad := slices.Clone(blob)
		bad[i] ^= 0x41
		if err := New().UnmarshalBinary(bad); !errors.Is(err, ErrBadModel) {
			t.Fatalf("byte %d flipped: err = %v, want ErrBadModel", i, err)
		}
	}
}

func TestLnChi2Q(t *testing.T) {
	for _, c := range []struct {
		x2 float64
		v  int
	}{{0.5, 2}, {10, 20}, {40, 40}, {150, 300}, {300, 300}} {
		want := math.Log(chi2Q(c.x2, c.v))
		if got := lnChi2Q(c.x2, c.v); math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("lnChi2Q(%v, %d) = %v, want %v", c.x2, c.v, got, want)
		}
	}
	// Far in the tail chi2Q underflows to 0; the log form keeps going.
	if got := lnChi2Q(5000, 300); math.IsInf(got, 0) || got > -1500 {
		t.Errorf("lnChi2Q(5000, 300) = %v, want a finite value below -1500", got)
	}
}

func TestSenderConsistencyTokens(t *testing.T) {
	mail := "From: Shop <news@mail.shop.co.uk>\nReply-To: <help@shop.co.uk>\nTo: Ann <ann@example.org>\nMessage-ID: <123.abc@web1.shop.co.uk>\nDate: Mon, 2 Dec 2002 18:04:49 -0600\nContent-Type: text/html\n\n<html><body><a href=\"http://www.shop.co.uk/x\">x</a> <a href=\"http://other.example.net/\">y</a> BUY NOW!!!</body></html>"
	got := Tokens([]byte(mail))
	for _, w := range []string{"m:msgid:same", "m:replyto:same", "m:to:named", "url:#fromdom", "url:#otherdom", "sh:mid:9.a", "sh:date:a, 9 a 9 9:9:9 -9", "b:!!!"} {
		if !slices.Contains(got, w) {
			t.Errorf("Tokens lacks %q; got %q", w, got)
		}
	}
}

func TestLayoutAndHostTokens(t *testing.T) {
	for _, c := range []struct {
		name      string
		mail      string
		want, not []string
	}{
		{"fake reply", "From: a@b.example\nSubject: Re: your order\nX-Mailer: Foo 1.0\nDate: Mon, 2 Dec 2002 18:04:49 -0600\nReceived: from x\nList-Id: <l.example>\n\nhello",
			[]string{"m:re:nothread", "hn:x-mailer", "ho:fsmd"}, []string{"hn:received", "hn:list-id"}},
		{"real reply", "From: a@b.example\nSubject: RE: lunch\nIn-Reply-To: <1@b.example>\n\nsure",
			[]string{"m:re:thread", "hn:in-reply-to", "ho:fsj"}, []string{"m:re:nothread"}},
		{"escaped host", "From: a@b.example\nContent-Type: text/html\n\n<a href=\"http://%77%77%77.spam.example/x\">x</a> <a href=\"http://ok.example\n/y\">y</a>",
			[]string{"url:#hostescaped", "url:www.spam.example", "url:spam.example", "url:ok.example"}, nil},
	} {
		checkTokens(t, c.name, c.mail, c.want, c.not)
	}
}

// checkTokens fails t unless Tokens of in has every token of want and none
// of not.
func checkTokens(t *testing.T, name, in string, want, not []string) {
	t.Helper()
	got := Tokens([]byte(in))
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: Tokens lacks %q; got %q", name, w, got)
		}
	}
	for _, w := range not {
		if slices.Contains(got, w) {
			t.Errorf("%s: Tokens has %q", name, w)
		}
	}
}

func TestStructureTokens(t *testing.T) {
	alt := func(plain, html string) string {
		return "From: a@shop.example\nTo: Ann <ann@example.org>\nContent-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n" +
			plain + "\n--b\nContent-Type: text/html\n\n" + html + "\n--b--\n"
	}
	for _, c := range []struct {
		name      string
		mail      string
		want, not []string
	}{
		{"links", "From: a@shop.example\nTo: ann@example.org\nContent-Type: text/html\n\n<p>Sent to ann@example.org. <a href=\"http://www.evil.example/r?u=http://x.example\">www.paypal.com</a> " +
			"<a href=\"http://shop.example/unsubscribe\">leave</a> <a href=\"mailto:remove@x.example\">remove</a> <img src=\"http://shop.example/a.gif\">",
			[]string{"url:#redirect", "url:#textmismatch", "url:#unsub:fromdom", "url:#unsub:mailto", "url:#ndom:2-3", "url:#nlinks:2-3", "m:to:inbody", "m:html:imgonly"}, nil},
		{"plain", "From: a@b.example\nTo: c@d.example\n\nBuy V1agra and m0rtgage now, F R E E, see http://b.example/x",
			[]string{"b:leet", "b:spaced", "url:#ndom:1", "url:#nlinks:1"}, []string{"m:to:inbody", "url:#redirect", "url:#textmismatch"}},
		{"words", "From: a@b.example\n\nwin2k mp3 and a-b-c are fine, I am OK",
			[]string{"url:#ndom:0"}, []string{"b:leet", "b:spaced"}},
		{"alt agrees", alt("Our spring sale starts today with great prices on garden tools", "<p>Our spring <b>sale</b> starts today with great prices on garden tools</p>"),
			[]string{"m:alt:4"}, []string{"m:alt:plainstub"}},
		{"alt stub", alt("", "<p>Our spring sale starts today with great prices on garden tools</p>"),
			[]string{"m:alt:plainstub"}, []string{"m:alt:4"}},
		{"alt differs", alt("Nothing here matches anything at all in the other part whatsoever", "<p>Our spring sale starts today with great prices on garden tools</p>"),
			[]string{"m:alt:0"}, nil},
	} {
		checkTokens(t, c.name, c.mail, c.want, c.not)
	}
}
