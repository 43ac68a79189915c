package model

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the f.Add seeds below
// cover the shapes the splitter must tell apart.

func FuzzSplitJoin(f *testing.F) {
	for _, s := range []string{
		"",
		"\n",
		"\r\n",
		"Subject: a\n\nbody\n",
		"Received: a\n\tb\nSubject: x\r\n\r\nReceived: in body",
		"From a@b  Thu Aug 22 12:36:23 2002\nReceived: r\nMessage-ID: <m@x>\n\nb",
		"Subject: a\nReceived: open",
		" lead\nreceived \t: x\n\n",
		"S\x00: \xff\rReceived: no\n\r\n\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p := Split(raw)
		got, err := Join(p)
		if err != nil {
			t.Fatalf("Join(Split(%q)): %v", raw, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("Join(Split(%q)) = %q", raw, got)
		}
		fs, err := ReceivedFields(p.Received)
		if err != nil {
			t.Fatalf("ReceivedFields(Split(%q).Received): %v", raw, err)
		}
		if n := ReceivedCount(raw); n != len(fs) {
			t.Fatalf("ReceivedCount(%q) = %d, Split found %d", raw, n, len(fs))
		}
		if hl := HeaderSectionLen(raw); hl != len(raw)-len(p.Body) {
			t.Fatalf("HeaderSectionLen(%q) = %d, Split's body starts at %d", raw, hl, len(raw)-len(p.Body))
		}
		if again := Split(p.Header); len(again.Received) != 0 || !bytes.Equal(again.Header, p.Header) || len(again.Body) != 0 {
			t.Fatalf("Split(%q).Header is not a Received-free header section", raw)
		}
		// The mail as smtpd stores it (its Return-Path and Received fields
		// in the received row), exported and cut of that Return-Path, has
		// raw's identity again: what dbctl import looks for.
		q, err := p.WithTrace([]byte("Received: from c by mx; now\r\n"))
		if err == nil {
			q, err = q.WithTrace([]byte("Return-Path: <a@b>\r\n"))
		}
		if len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
			// It would continue our field: WithTrace refuses, smtpd too.
			if !errors.Is(err, ErrBadReceived) {
				t.Fatalf("WithTrace before a leading continuation line %q: %v", raw, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("WithTrace on Split(%q): %v", raw, err)
		}
		exported, err := Join(q)
		if err != nil {
			t.Fatalf("smtpd's fields before %q do not join: %v", raw, err)
		}
		if want := "Return-Path: <a@b>\r\nReceived: from c by mx; now\r\n" + string(raw); string(exported) != want {
			t.Fatalf("smtpd's fields before %q join to %q", raw, exported)
		}
		rest, ok := CutReturnPath(exported)
		if r := Split(rest); !ok || !bytes.Equal(r.Header, p.Header) || !bytes.Equal(r.Body, p.Body) {
			t.Fatalf("CutReturnPath of %q exported: %v, %q", raw, ok, rest)
		}
	})
}

// FuzzJoin feeds Join arbitrary parts. Join must never panic, and whenever it
// accepts parts that Split could have produced (a Received-free header
// section, a body only after a separator), splitting its output must give
// back exactly those parts: Join accepts no encoding that Split would not
// produce.
func FuzzJoin(f *testing.F) {
	f.Add([]byte("A: b\n\n"), rec(0, "Received: r\n"), []byte("body"))
	f.Add([]byte("A: b"), rec(1, "Received: r\n"), []byte(""))
	f.Add([]byte(" x\n"), rec(0, "Received: r\n"), []byte(""))
	f.Add([]byte(""), rec(0, "Received: open"), []byte(""))
	f.Add([]byte("A: b\n\n"), cat(rec(0, "Return-Path: <a@b>\r\n"), rec(1, "Received: r\n")), []byte("body"))
	f.Add([]byte("A: b\nC: d\n"), cat(rec(0, "received: 1\n"), rec(2, "RECEIVED: 2\n x\n"), rec(4, "Received :3")), []byte(""))
	f.Fuzz(func(t *testing.T, header, received, body []byte) {
		out, err := Join(Parts{Header: header, Received: received, Body: body})
		if err != nil {
			if !errors.Is(err, ErrBadReceived) {
				t.Fatalf("Join error %v does not wrap ErrBadReceived", err)
			}
			return
		}
		h := Split(header)
		if len(h.Received) != 0 || len(h.Body) != 0 {
			return // not a header section Split could produce
		}
		if len(body) > 0 && !isSeparatorLine(header) {
			return // a body without a separator would be read as header
		}
		if fs, _ := ReceivedFields(received); slices.ContainsFunc(fs, func(f ReceivedField) bool { return !isReceived(f.Raw) }) {
			return // a Return-Path record (WithTrace's): Split keeps the field in the header
		}
		p := Split(out)
		if !bytes.Equal(p.Header, header) || !bytes.Equal(p.Received, received) || !bytes.Equal(p.Body, body) {
			t.Fatalf("Split(Join(%q, %q, %q)) = %q, %q, %q", header, received, body, p.Header, p.Received, p.Body)
		}
	})
}

// isSeparatorLine reports whether header ends with its separator line.
func isSeparatorLine(header []byte) bool {
	return bytes.Equal(header, []byte("\n")) || bytes.Equal(header, []byte("\r\n")) ||
		bytes.HasSuffix(header, []byte("\n\n")) || bytes.HasSuffix(header, []byte("\n\r\n"))
}

func FuzzDecodeState(f *testing.F) {
	var s State
	s.Set("verdict", EncodeVerdict(SourceOperator, 3, Accept))
	s.Set(ColDeleted, FlagSet)
	s.Add("n", "site-a", 5)
	s.Add("n", "site-b", 1<<40)
	f.Add(s.AppendBinary(nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{0x00, 0x80, 0x00})
	f.Add([]byte{0x01, 0x01, 'a', 0x01, 0x00, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeState(t, b)
	})
}

func FuzzParseMailContent(f *testing.F) {
	f.Add(MailContent(KeyOf(Header, []byte("h")), KeyOf(Body, []byte("b"))))
	f.Add([]byte{})
	f.Add(make([]byte, 65))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, bd, err := ParseMailContent(b)
		if err != nil {
			if !errors.Is(err, ErrBadContent) || len(b) == PairContentSize {
				t.Fatalf("ParseMailContent(%x) = %v", b, err)
			}
		} else if !bytes.Equal(MailContent(h, bd), b) {
			t.Fatalf("MailContent(ParseMailContent(%x)) differs", b)
		}
		m, mb, err := ParseReceiveContent(b)
		if (err == nil) != (len(b) == PairContentSize) {
			t.Fatalf("ParseReceiveContent(%x) error = %v", b, err)
		}
		if err == nil && !bytes.Equal(ReceiveContent(m, mb), b) {
			t.Fatalf("ReceiveContent(ParseReceiveContent(%x)) differs", b)
		}
	})
}

// FuzzCRLF: CRLF leaves no LF without its CR, and taking out the CRs it
// added gives the input back.
func FuzzCRLF(f *testing.F) {
	for _, s := range []string{"", "a\nb", "a\r\nb\n", "\r\r\n\n", "x\ry\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := CRLF(raw)
		for i, b := range out {
			if b == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("CRLF(%q) = %q: bare LF at %d", raw, out, i)
			}
		}
		if len(out)-len(raw) != bytes.Count(out, []byte("\r\n"))-bytes.Count(raw, []byte("\r\n")) {
			t.Fatalf("CRLF(%q) = %q: added more than a CR per bare LF", raw, out)
		}
		if !bytes.Equal(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("CRLF(%q) = %q: content changed", raw, out)
		}
	})
}

// FuzzReceivedFields: any byte string decodes or is refused with
// ErrBadReceived, and what decodes is canonical: its records written again
// are the input, byte for byte (one delivery, one received content).
func FuzzReceivedFields(f *testing.F) {
	f.Add([]byte{})
	f.Add(rec(0, "Received: a\n"))
	f.Add(cat(rec(0, "Return-Path: <a@b>\r\n"), rec(3, "received : b\r\n c\r\n"), rec(200, "Received: open")))
	f.Add(cat([]byte{0x80, 0x00, 12}, []byte("Received: r\n")))
	f.Add(rec(0, "Received: a\nReceived: b\n"))
	f.Fuzz(func(t *testing.T, enc []byte) {
		fs, err := ReceivedFields(enc)
		if err != nil {
			if !errors.Is(err, ErrBadReceived) {
				t.Fatalf("ReceivedFields(%q) error %v does not wrap ErrBadReceived", enc, err)
			}
			return
		}
		var again []byte
		for i, fd := range fs {
			if i > 0 && fd.Index <= fs[i-1].Index || !isHeaderField(fd.Raw) || fieldEnd(fd.Raw, 0) != len(fd.Raw) {
				t.Fatalf("ReceivedFields(%q) gave a bad record %d: {%d %q}", enc, i, fd.Index, fd.Raw)
			}
			again = appendRecord(again, fd.Index, fd.Raw)
		}
		if !bytes.Equal(again, enc) {
			t.Fatalf("ReceivedFields(%q) accepted a non-canonical encoding (%q)", enc, again)
		}
	})
}

// FuzzMsgIDContent: the Message-ID normaliser (Split's and the msgid row's)
// never keeps a line break, stays within MaxMsgIDLen, and is idempotent, so
// a msgid row's content names itself.
func FuzzMsgIDContent(f *testing.F) {
	for _, s := range []string{"<a@b>", " <A@B> (c)", "(was <old@x>)\r\n (\\(<) <new@x>", "(unclosed <a@b>", "<>", "a>b<c", "<<a@b>>", "(a)(b) id@x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		c := MsgIDContent(id)
		if c == nil {
			return
		}
		if len(c) == 0 || len(c) > MaxMsgIDLen || bytes.ContainsAny(c, "\r\n") {
			t.Fatalf("MsgIDContent(%q) = %q", id, c)
		}
		if again := MsgIDContent(string(c)); !bytes.Equal(again, c) {
			t.Fatalf("MsgIDContent(%q) = %q, then %q: not idempotent", id, c, again)
		}
		if p := Split([]byte("Message-ID: " + id + "\r\n\r\n")); p.MessageID != "" && p.MessageID != string(c) && !strings.ContainsAny(id, "\r\n") {
			t.Fatalf("Split's Message-ID %q differs from MsgIDContent(%q) = %q", p.MessageID, id, c)
		}
	})
}

// FuzzMailReceivedEncoded: dbd reads a stored state's received link
// without decoding it; on any bytes it must agree with the decoded state's
// MailReceived, and refuse what DecodeState refuses in the columns.
func FuzzMailReceivedEncoded(f *testing.F) {
	r1, r2 := KeyOf(Received, []byte("1")), KeyOf(Received, []byte("2"))
	f.Add(State{Cols: map[string]uint64{ReceivedColumn(r1): 5, ReceivedColumn(r2): 5, AppendedReceivedColumn(r2): 1}}.AppendBinary(nil))
	f.Add(State{Cols: map[string]uint64{AppendedReceivedColumn(r1): 1, "seen": 3}}.AppendBinary([]byte{}))
	f.Add([]byte{1, 3, 'a', 'b', 'c', 0})
	f.Add([]byte{0x00, 0x01, 0x01, 'x', 0x01, 0x01, 's', 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ok, err := MailReceivedEncoded(b)
		st, _, derr := DecodeState(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) || derr == nil {
				t.Fatalf("MailReceivedEncoded(%x) = %v, DecodeState: %v", b, err, derr)
			}
			return
		}
		if derr != nil {
			return // the counters are not read
		}
		if wk, wok := MailReceived(st); k != wk || ok != wok {
			t.Fatalf("MailReceivedEncoded(%x) = %s %v, MailReceived %s %v", b, k, ok, wk, wok)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	k := KeyOf(Body, []byte("x"))
	f.Add(k.String())
	f.Add(strings.ToUpper(k.String()))
	f.Add(strings.Repeat("g", 64))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("ParseKey(%q) error %v does not wrap ErrBadKey", s, err)
			}
			return
		}
		if !strings.EqualFold(k.String(), s) {
			t.Fatalf("ParseKey(%q) = %s", s, k)
		}
	})
}

// FuzzParseLinkColumn: a link column's name gives back the key it was made
// from, and no other name gives a key whose link has another length.
func FuzzParseLinkColumn(f *testing.F) {
	k := KeyOf(Received, []byte("r"))
	f.Add(receivedColPrefix, ReceivedColumn(k))
	f.Add(POP3SizePrefix, POP3SizeColumn(k))
	f.Add(pwColPrefix, ReceivedColumn(k))
	f.Add(receivedColPrefix, ReceivedColumn(k)[:len(ReceivedColumn(k))-1]+"1")
	f.Fuzz(func(t *testing.T, prefix, name string) {
		k, ok := ParseLinkColumn(prefix, name)
		if bk, bok := parseLinkColumn(prefix, []byte(name)); bk != k || bok != ok {
			t.Fatalf("parseLinkColumn(%q, %q) = %s %v, ParseLinkColumn %s %v", prefix, name, bk, bok, k, ok)
		}
		if !ok {
			return
		}
		l := LinkColumn(prefix, k)
		// The last digit's low 4 bits are not part of the key (as
		// keyBase32 reads them); every other byte must be the same.
		if len(l) != len(name) || l[:len(l)-1] != name[:len(name)-1] {
			t.Fatalf("ParseLinkColumn(%q, %q) = %s, whose link is %q", prefix, name, k, l)
		}
		if k2, ok := ParseLinkColumn(prefix, l); !ok || k2 != k {
			t.Fatalf("ParseLinkColumn(LinkColumn(%q, %s)) = %s, %v", prefix, k, k2, ok)
		}
	})
}

// FuzzParseAccountContent: what parses is what AccountContent and
// PasswordContent write, byte for byte.
func FuzzParseAccountContent(f *testing.F) {
	f.Add(AccountContent("alice"))
	f.Add([]byte("twinmx-account/1\nAlice"))
	f.Add(PasswordContent("bob", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$a2V5\nmore"))
	f.Add([]byte("twinmx-password/1\n\nh"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if login, err := ParseAccountContent(b); err == nil {
			if !bytes.Equal(AccountContent(login), b) || CheckLogin(login) != nil {
				t.Fatalf("ParseAccountContent(%q) = %q, which AccountContent writes as %q", b, login, AccountContent(login))
			}
		} else if !errors.Is(err, ErrBadContent) {
			t.Fatalf("ParseAccountContent(%q) error %v does not wrap ErrBadContent", b, err)
		}
		if login, hash, err := ParsePasswordContent(b); err == nil {
			if !bytes.Equal(PasswordContent(login, hash), b) || CheckLogin(login) != nil || hash == "" {
				t.Fatalf("ParsePasswordContent(%q) = %q, %q, which PasswordContent writes as %q", b, login, hash, PasswordContent(login, hash))
			}
		} else if !errors.Is(err, ErrBadContent) {
			t.Fatalf("ParsePasswordContent(%q) error %v does not wrap ErrBadContent", b, err)
		}
	})
}

func FuzzParseFolderNameContent(f *testing.F) {
	f.Add(FolderNameContent(UserFolderID(1), "Work/2026 ä"))
	f.Add(FolderNameContent(UserFolderID(1), "a\r\nb"))
	f.Add(FolderNameContent(FolderInbox, "a//b"))
	f.Add([]byte("imap.fname\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, name, err := ParseFolderNameContent(b)
		if err != nil {
			if !errors.Is(err, ErrBadContent) {
				t.Fatalf("ParseFolderNameContent(%q) error %v does not wrap ErrBadContent", b, err)
			}
			return
		}
		if CheckFolderName(name) != nil || !bytes.Equal(FolderNameContent(id, name), b) {
			t.Fatalf("ParseFolderNameContent(%q) = %s, %q", b, id, name)
		}
	})
}

// FuzzParseFolderColumn covers both folder-id columns: the folder set's and
// a receive row's membership.
func FuzzParseFolderColumn(f *testing.F) {
	f.Add(FolderColumn(UserFolderID(0x1234)))
	f.Add(MemberColumn(FolderInbox))
	f.Add("imap.f.8000000000000ABC")
	f.Add("imap.in.0000000000000006")
	f.Fuzz(func(t *testing.T, name string) {
		if id, ok := ParseFolderColumn(name); ok && (!id.Valid() || FolderColumn(id) != name) {
			t.Fatalf("ParseFolderColumn(%q) = %s", name, id)
		}
		if id, ok := ParseMemberColumn(name); ok && (!id.Valid() || MemberColumn(id) != name) {
			t.Fatalf("ParseMemberColumn(%q) = %s", name, id)
		}
	})
}

// FuzzParseReason: a reason written is read back on one line, whatever it
// held, and no content makes ParseReason panic.
func FuzzParseReason(f *testing.F) {
	f.Add([]byte("twinmx-reason/1\nreceive: x\nreason: a"), "classifier 0.99\nsecond line")
	f.Add([]byte("twinmx-reason/1\n"), "\r\nreason: forged")
	f.Fuzz(func(t *testing.T, b []byte, reason string) {
		if r, ok := ParseReason(b); ok && !bytes.HasSuffix(b, []byte(r)) {
			t.Fatalf("ParseReason(%q) = %q, not the content's end", b, r)
		}
		c := ReasonContent(KeyOf(Receive, b), Accept, 0.5, reason)
		if r, ok := ParseReason(c); !ok || r != oneLine(reason) || strings.ContainsAny(r, "\r\n") {
			t.Fatalf("ParseReason(ReasonContent(%q)) = %q, %v", reason, r, ok)
		}
	})
}

// FuzzParseEnums: the name parsers accept exactly the names String gives
// (ParsePolicy in any case).
func FuzzParseEnums(f *testing.F) {
	for _, s := range []string{"body", "throw-in", "Body", "accept", "retry", "filter", "operator", "nogreylist", "ACCEPT", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tb, err := ParseTable(s); err == nil && (!tb.Valid() || tb.String() != s) {
			t.Fatalf("ParseTable(%q) = %v", s, tb)
		} else if err != nil && !errors.Is(err, ErrUnknownTable) {
			t.Fatalf("ParseTable(%q) error %v", s, err)
		}
		if v, err := ParseVerdict(s); err == nil && (!v.Valid() || v.String() != s) {
			t.Fatalf("ParseVerdict(%q) = %v", s, v)
		}
		if src, err := ParseSource(s); err == nil && (!src.Valid() || src.String() != s) {
			t.Fatalf("ParseSource(%q) = %v", s, src)
		}
		if p, err := ParsePolicy(s); err == nil && (!p.Valid() || !strings.EqualFold(p.String(), s)) {
			t.Fatalf("ParsePolicy(%q) = %v", s, p)
		}
	})
}

// FuzzDecodeColumnValues: the decoders of column values (verdict, policy,
// feedback) take any uint64; a value they call valid is one their encoder
// makes, and CheckColumn agrees with DecodeVerdict.
func FuzzDecodeColumnValues(f *testing.F) {
	for _, v := range []uint64{0, 1, EncodeVerdict(SourceOperator, 7, Accept), EncodeVerdict(SourceFilter, 0, Retry) | 1<<48, 255, 256 | 2, math.MaxUint64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, x uint64) {
		src, epoch, v, ok := DecodeVerdict(x)
		if ok && EncodeVerdict(src, epoch, v) != x {
			t.Fatalf("DecodeVerdict(%#x) = %v %d %v, which encodes as %#x", x, src, epoch, v, EncodeVerdict(src, epoch, v))
		}
		if err := CheckColumn(ColVerdict, x); (err == nil) != (ok || x == 0) {
			t.Fatalf("CheckColumn(verdict, %#x) = %v, DecodeVerdict ok %v", x, err, ok)
		}
		if p, known := PolicyOf(x); !p.Valid() || known && x >= 1<<8 && p != Policy(x&0xff) {
			t.Fatalf("PolicyOf(%#x) = %v, %v", x, p, known)
		}
		if spam, ok := DecodeFeedback(x); ok && FeedbackValue(time.UnixMilli(int64(x>>2)), spam) != x {
			t.Fatalf("DecodeFeedback(%#x) = %v, which encodes otherwise", x, spam)
		}
	})
}
