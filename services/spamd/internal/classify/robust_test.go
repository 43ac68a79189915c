package classify

import (
	"bytes"
	"encoding/base64"
	"runtime"
	"testing"
)

// TestToInBodyLongAddress: the To address is compared at every '@' of the
// body, so one longer than an address can be (RFC 5321: 256 octets) made
// the search quadratic — a 96 KiB To field and a body of 'a's and '@'s
// took seconds. Such a To is not looked for; a real one still is.
func TestToInBodyLongAddress(t *testing.T) {
	long := append(bytes.Repeat([]byte("a"), maxAddrLen), "@x.example"...)
	body := append(append([]byte("sent to "), long...), '\n')
	if toInBody(long, body) {
		t.Errorf("a To address of %d bytes was searched for", len(long))
	}
	if !toInBody([]byte("Bob <bob@x.example>"), []byte("this mail was sent to BOB@x.example\n")) {
		t.Error("a real To address in the body was not found")
	}
}

// TestDecodeTextBase64Bounded: a text part's base64 is decoded only as
// far as the text budget, the most that is ever tokenized; it was decoded
// whole, allocating about twice the part (a 64 MiB mail: over 100 MiB per
// judged recipient). What is decoded is the start of the whole decoding.
func TestDecodeTextBase64Bounded(t *testing.T) {
	text := bytes.Repeat([]byte("hello world, "), (8<<20)/13)
	enc := base64.StdEncoding.EncodeToString(text)
	var body bytes.Buffer
	for i := 0; i < len(enc); i += 76 {
		body.WriteString(enc[i:min(i+76, len(enc))])
		body.WriteString("\r\n")
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, bad := decodeBody("base64", body.Bytes(), maxTextBytes)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4*maxTextBytes {
		t.Errorf("decoding a %d-byte part allocated %d bytes, want at most %d", body.Len(), n, 4*maxTextBytes)
	}
	if bad || !bytes.Equal(out, text[:maxTextBytes]) {
		t.Errorf("decoded %d bytes (bad %v), want the first %d of the text", len(out), bad, maxTextBytes)
	}
	// An attached message (limit 0) is still decoded whole.
	if out, _ := decodeBody("base64", body.Bytes(), 0); !bytes.Equal(out, text) {
		t.Errorf("unlimited decoding gave %d bytes, want %d", len(out), len(text))
	}
	// A short or broken part decodes as before.
	for in, want := range map[string]string{"aGVsbG8=": "hello", "aGVs\r\n bG8": "hello", "aGVsbG8h!x": "hello!"} {
		if out, _ := decodeBody("base64", []byte(in), maxTextBytes); string(out) != want {
			t.Errorf("decodeBody(%q) = %q, want %q", in, out, want)
		}
	}
}
