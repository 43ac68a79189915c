// Package sender reduces an envelope sender (RFC 5321 MAIL FROM) to the
// stable address that spamd keys its sender signals on: greylisting
// triplets, known correspondents and the allow/block lists (package
// judge, docs/spamd.md "Sender keys").
//
// Many senders put a per-message tag into the envelope address so that a
// bounce can be traced to the mail that caused it: BATV signs the local
// part (prvs=TAG=local@domain), mailing lists and bulk senders use VERP
// (list-bounces+user=example.org@lists.example, bounce-123-456@mail.example)
// and forwarders rewrite the address with SRS
// (SRS0=HHH=TT=orig.example=local@forwarder.example). Keyed on the raw
// address, every mail of such a sender is a first contact again. Normalize
// removes those tags, and nothing else: two addresses that differ outside a
// per-message tag stay different, and no rule merges two domains except
// SRS, which names the original sender's domain itself.
//
// Normalize is a pure function of its argument, safe for concurrent use,
// and idempotent: Normalize(Normalize(a)) == Normalize(a).
package sender

import "strings"

// MaxLen is the longest address Normalize reduces; a longer one (RFC
// 5321 §4.5.3.1.3 allows 256 octets in a path) is only lower-cased, which
// keeps the work linear in a bounded input.
const MaxLen = 1024

// Normalize returns the key form of the envelope sender addr, lower-cased:
//
//   - SRS0/SRS1 (a forwarder's rewrite, separators '=', '+' or '-' after
//     the prefix as libsrs2 accepts them) → the original sender the address
//     encodes; an SRS address that does not parse → "srs0@" or "srs1@"
//     the forwarder's domain, so its changing hash and time stamp do not
//     make every mail new;
//   - BATV (prvs=TAG=local, msprvs1=TAG=local, btv1==TAG==local, TAG
//     letters and digits) → local;
//   - a local part whose part before the first '+' has the word bounce,
//     bounces, bnc, return, returns or verp (VERP of lists and bulk
//     senders): every word that is only digits → "#", as postgrey does,
//     so bounce-123456-789 → bounce-#-#; the rest stays (it names the
//     recipient, which both keys already hold);
//   - any other local part → the part before the first '+' (RFC 5233
//     sub-address, per-message extensions), when that part is not empty.
//     A bounce local part keeps its '+' part: in a bulk sender's shared
//     bounces+ID-...@ domain, ID tells its customers apart.
//
// SRS and BATV are undone until neither applies (a forwarded BATV address
// is both). The null sender "" stays "", and no other address becomes "".
// An address without '@' is only lower-cased.
func Normalize(addr string) string {
	s := strings.ToLower(addr)
	if len(s) > MaxLen {
		return s
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return s
	}
	local, domain := s[:at], s[at+1:]
	// Each step shortens the address, so this ends.
	for {
		if l, d, ok := unSRS(local, domain); ok {
			local, domain = l, d
			continue
		}
		if l, ok := unBATV(local); ok {
			local = l
			continue
		}
		break
	}
	return unVERP(local) + "@" + domain
}

// unSRS returns the sender an SRS local part encodes (ok), or the stable
// "srs0"/"srs1" at the forwarder when it does not parse.
//
//	SRS0=HHH=TT=orig.example=local
//	SRS1=HHH=first.forwarder.example==HHH=TT=orig.example=local
func unSRS(local, domain string) (string, string, bool) {
	if len(local) < 5 || local[:3] != "srs" || local[3] != '0' && local[3] != '1' || !srsSep(local[4]) {
		return "", "", false
	}
	kind, body := local[:4], local[5:]
	if kind == "srs1" {
		// HHH=forwarder=<SRS0 separator><SRS0 body>
		hash, rest, ok := strings.Cut(body, "=")
		host, srs0, ok2 := strings.Cut(rest, "=")
		if !ok || !ok2 || hash == "" || !hostLike(host) || srs0 == "" || !srsSep(srs0[0]) {
			return kind, domain, true
		}
		body = srs0[1:]
	}
	// HHH=TT=orig.example=local; local may hold '='.
	parts := strings.SplitN(body, "=", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || !hostLike(parts[2]) || parts[3] == "" {
		return kind, domain, true
	}
	return parts[3], parts[2], true
}

func srsSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// hostLike reports whether s can be the domain an SRS address encodes: not
// empty, without '@', '=' or spaces. Letters are not checked: an SMTPUTF8
// sender's domain is a U-label.
func hostLike(s string) bool {
	return s != "" && !strings.ContainsAny(s, "@= \t")
}

// batvPrefixes are the BATV schemes: the draft's prvs= (draft-levine-smtp-
// batv), Microsoft's msprvs1= and Barracuda's btv1==TAG==.
var batvPrefixes = []struct{ prefix, sep string }{
	{"prvs=", "="}, {"msprvs1=", "="}, {"btv1==", "=="},
}

// unBATV returns local without its BATV tag. The tag must be letters and
// digits and the address after it not empty; anything else is left alone.
func unBATV(local string) (string, bool) {
	for _, p := range batvPrefixes {
		rest, ok := strings.CutPrefix(local, p.prefix)
		if !ok {
			continue
		}
		tag, addr, ok := strings.Cut(rest, p.sep)
		if !ok || tag == "" || addr == "" || !alnum(tag) {
			return "", false
		}
		return addr, true
	}
	return "", false
}

func alnum(s string) bool {
	for i := range len(s) {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// bounceWords mark a VERP or bounce local part: a word (letters and digits
// between other characters) of the part before the first '+'.
var bounceWords = map[string]bool{
	"bounce": true, "bounces": true, "bnc": true, "return": true, "returns": true, "verp": true,
}

func unVERP(local string) string {
	base, _, plus := strings.Cut(local, "+")
	if isBounce(base) {
		return hashDigits(local)
	}
	if plus && base != "" {
		return base
	}
	return local
}

func isBounce(s string) bool {
	for w := range strings.FieldsFuncSeq(s, func(r rune) bool { return r < 0x80 && !isAlnum(byte(r)) }) {
		if bounceWords[w] {
			return true
		}
	}
	return false
}

// hashDigits replaces every word of only ASCII digits with "#". A word
// ends at a byte that is not a letter, digit or '_' (Perl's \b); bytes of
// a UTF-8 sequence count as letters, so "Grüße2" keeps its digit.
func hashDigits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || i > 0 && isWord(s[i-1]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j < len(s) && isWord(s[j]) {
			b.WriteString(s[i:j])
		} else {
			b.WriteByte('#')
		}
		i = j
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool { return isAlnum(c) || c == '_' || c >= 'A' && c <= 'Z' || c >= 0x80 }
