package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flynn/noise"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// testNow is the fixed clock of the pure handshake tests.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

// fixture holds the keys and server state of a pure handshake.
type fixture struct {
	client, server KeyPair
	replay         *ReplayCache
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{client: mustKeyPair(t), server: mustKeyPair(t), replay: NewReplayCache(0, 0)}
}

// responder returns a server step that allows only f.client and whose clock
// reads now.
func (f *fixture) responder(now time.Time) *responder {
	return &responder{
		static: &f.server,
		authorize: func(k PublicKey) error {
			if k != f.client.Public {
				return errors.New("not in the allow-list")
			}
			return nil
		},
		replay:   f.replay,
		now:      now,
		window:   DefaultWindow,
		payload:  msg2Payload{Version: ProtocolVersion, MaxFrame: MaxCiphertext},
		prologue: []byte(Prologue),
	}
}

// msg1 returns a fresh client state and message 1 stamped at.
func (f *fixture) msg1(t testing.TB, at time.Time) (*initiator, []byte) {
	t.Helper()
	in, m, err := initiate(&f.client, f.server.Public, at, []byte(Prologue), nil)
	if err != nil {
		t.Fatalf("initiate: %v", err)
	}
	return in, m
}

// sessions runs a complete pure handshake.
func (f *fixture) sessions(t testing.TB) (cli, srv *session) {
	t.Helper()
	in, m1 := f.msg1(t, testNow)
	m2, srv, err := f.responder(testNow).respond(m1)
	if err != nil {
		t.Fatalf("respond: %v", err)
	}
	cli, err = in.finish(m2)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	return cli, srv
}

func wantReason(t testing.TB, err error, want Reason) *HandshakeError {
	t.Helper()
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("error = %v (%T), want a *HandshakeError with reason %s", err, err, want)
	}
	if he.Reason != want {
		t.Fatalf("reason = %s (%v), want %s", he.Reason, err, want)
	}
	return he
}

func TestHandshakePure(t *testing.T) {
	f := newFixture(t)
	cli, srv := f.sessions(t)
	if !bytes.Equal(cli.id, srv.id) || len(cli.id) != 32 {
		t.Fatalf("session ids differ: %x vs %x", cli.id, srv.id)
	}
	if cli.peer != f.server.Public || srv.peer != f.client.Public {
		t.Fatal("peer keys wrong")
	}
	for _, dir := range []struct {
		name     string
		from, to *session
	}{{"client to server", cli, srv}, {"server to client", srv, cli}} {
		ct, err := dir.from.send.Encrypt(nil, nil, []byte("ping"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := dir.to.recv.Decrypt(nil, nil, ct)
		if err != nil || string(pt) != "ping" {
			t.Fatalf("%s: Decrypt = %q, %v", dir.name, pt, err)
		}
	}
	// A second handshake between the same keys is a different session.
	cli2, _ := f.sessions(t)
	if bytes.Equal(cli.id, cli2.id) {
		t.Fatal("two handshakes gave the same session id")
	}
}

// TestNoiseVector checks our cipher suite and pattern (including the
// checkedDH wrapper) against the Noise test vector for
// Noise_IK_25519_ChaChaPoly_BLAKE2s (TEST-CATALOG item 60).
func TestNoiseVector(t *testing.T) {
	v := readVector(t, "testdata/noise-IK-vector.txt")
	key := func(name string) *KeyPair {
		var kp KeyPair
		copy(kp.Private[:], v[name])
		pub, err := publicOf(kp.Private)
		if err != nil {
			t.Fatal(err)
		}
		kp.Public = pub
		return &kp
	}
	is, rs := key("init_static"), key("resp_static")
	ihs, err := noise.NewHandshakeState(noiseConfig(true, is, &rs.Public, nil, bytes.NewReader(v["gen_init_ephemeral"])))
	if err != nil {
		t.Fatal(err)
	}
	rhs, err := noise.NewHandshakeState(noiseConfig(false, rs, nil, nil, bytes.NewReader(v["gen_resp_ephemeral"])))
	if err != nil {
		t.Fatal(err)
	}
	m0, _, _, err := ihs.WriteMessage(nil, v["msg_0_payload"])
	if err != nil || !bytes.Equal(m0, v["msg_0_ciphertext"]) {
		t.Fatalf("msg 0 = %x, %v\nwant %x", m0, err, v["msg_0_ciphertext"])
	}
	if _, _, _, err := rhs.ReadMessage(nil, m0); err != nil {
		t.Fatal(err)
	}
	// flynn returns the pair (initiator->responder, responder->initiator)
	// on both sides.
	m1, rI2R, rR2I, err := rhs.WriteMessage(nil, v["msg_1_payload"])
	if err != nil || !bytes.Equal(m1, v["msg_1_ciphertext"]) {
		t.Fatalf("msg 1 = %x, %v\nwant %x", m1, err, v["msg_1_ciphertext"])
	}
	_, iI2R, iR2I, err := ihs.ReadMessage(nil, m1)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := iI2R.Encrypt(nil, nil, v["msg_2_payload"])
	if err != nil || !bytes.Equal(m2, v["msg_2_ciphertext"]) {
		t.Fatalf("msg 2 = %x, %v\nwant %x", m2, err, v["msg_2_ciphertext"])
	}
	if pt, err := rI2R.Decrypt(nil, nil, m2); err != nil || !bytes.Equal(pt, v["msg_2_payload"]) {
		t.Fatalf("responder cannot read msg 2: %v", err)
	}
	m3, err := rR2I.Encrypt(nil, nil, v["msg_3_payload"])
	if err != nil || !bytes.Equal(m3, v["msg_3_ciphertext"]) {
		t.Fatalf("msg 3 = %x, %v\nwant %x", m3, err, v["msg_3_ciphertext"])
	}
	if pt, err := iR2I.Decrypt(nil, nil, m3); err != nil || !bytes.Equal(pt, v["msg_3_payload"]) {
		t.Fatalf("initiator cannot read msg 3: %v", err)
	}
}

// readVector reads name=hex lines; # lines are comments.
func readVector(t testing.TB, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make(map[string][]byte)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		b, err := hex.DecodeString(val)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		v[name] = b
	}
	return v
}

// seq returns n bytes start, start+1, ...
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// goldenKeys returns fixed key pairs for the known-answer transcript.
func goldenKeys(t testing.TB) (client, server KeyPair) {
	t.Helper()
	for _, kp := range []*KeyPair{&client, &server} {
		start := byte(1)
		if kp == &server {
			start = 0x41
		}
		copy(kp.Private[:], seq(start, KeySize))
		pub, err := publicOf(kp.Private)
		if err != nil {
			t.Fatal(err)
		}
		kp.Public = pub
	}
	return client, server
}

// goldenTranscript runs a fixed-key, fixed-ephemeral, fixed-clock
// handshake and a few frames, and returns the labelled transcript.
func goldenTranscript(t testing.TB) []byte {
	t.Helper()
	client, server := goldenKeys(t)
	h := detHandshake(t)
	m1, m2, cli, srv := h.m1, h.m2, h.cli, h.srv
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Known-answer transcript of the twinmx dbd handshake (docs/wire.md §2, §3).\n")
	fmt.Fprintf(&out, "# Regenerate with: go test -run TestGoldenTranscript -update\n")
	line := func(name string, b []byte) { fmt.Fprintf(&out, "%s=%x\n", name, b) }
	line("prologue", []byte(Prologue))
	line("client_static_private", client.Private[:])
	line("client_static_public", client.Public[:])
	line("server_static_private", server.Private[:])
	line("server_static_public", server.Public[:])
	line("client_ephemeral_private", seq(0x81, KeySize))
	line("server_ephemeral_private", seq(0xc1, KeySize))
	line("timestamp_tai64n", appendTAI64N(nil, testNow))
	line("msg1_wire", append([]byte{0, Msg1Size}, m1...))
	line("msg2_payload", h.payload.append(nil))
	line("msg2_wire", append([]byte{0, Msg2Size}, m2...))
	line("session_id", cli.id)

	cc := newConn(&memConn{}, cli, DefaultRekeyFrames)
	sc := newConn(&memConn{}, srv, DefaultRekeyFrames)
	if err := cc.WriteFrame(Frame{ReqID: 1, Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if err := cc.WriteFrame(Frame{Flags: FlagMore, ReqID: 2, Data: []byte("part one")}); err != nil {
		t.Fatal(err)
	}
	if err := sc.WriteFrame(Frame{ReqID: 1, Data: []byte("world")}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	line("client_frames_wire", cc.nc.(*memConn).out.Bytes())
	line("server_frames_wire", sc.nc.(*memConn).out.Bytes())
	if !bytes.Equal(cli.id, srv.id) {
		t.Fatal("session ids differ")
	}
	return out.Bytes()
}

// TestGoldenTranscript is the known-answer test: fixed keys, ephemerals
// (flynn Config.Random) and clock must give byte-identical messages.
func TestGoldenTranscript(t *testing.T) {
	got := goldenTranscript(t)
	path := filepath.Join("testdata", "handshake.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("transcript differs from %s:\n%s\nwant:\n%s", path, got, want)
	}
	// The golden frames must also decrypt on the other side.
	v := readVector(t, path)
	client, server := goldenKeys(t)
	_ = client
	r := &responder{
		static: &server, authorize: func(PublicKey) error { return nil },
		replay: NewReplayCache(0, 0), now: testNow, window: DefaultWindow,
		payload:  msg2Payload{Version: ProtocolVersion, MaxFrame: MaxCiphertext},
		prologue: []byte(Prologue), rng: bytes.NewReader(v["server_ephemeral_private"]),
	}
	m2, srv, err := r.respond(v["msg1_wire"][LengthSize:])
	if err != nil || !bytes.Equal(m2, v["msg2_wire"][LengthSize:]) {
		t.Fatalf("responder replay of the golden msg1: %x, %v", m2, err)
	}
	sc := newConn(&memConn{in: bytes.NewReader(v["client_frames_wire"])}, srv, DefaultRekeyFrames)
	for _, want := range []string{"hello", "part one"} {
		fr, err := sc.ReadFrame()
		if err != nil || string(fr.Data) != want {
			t.Fatalf("golden frame = %q, %v; want %q", fr.Data, err, want)
		}
	}
	if _, err := sc.ReadFrame(); err != io.EOF {
		t.Fatalf("golden stream end = %v, want io.EOF", err)
	}
}

func TestRespondChecks(t *testing.T) {
	f := newFixture(t)
	stranger := mustKeyPair(t)

	t.Run("unknown key", func(t *testing.T) {
		in, m1, err := initiate(&stranger, f.server.Public, testNow, []byte(Prologue), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = in
		_, _, err = f.responder(testNow).respond(m1)
		he := wantReason(t, err, ReasonUnknownKey)
		if he.Peer != stranger.Public {
			t.Fatalf("Peer = %v, want the stranger's key", he.Peer)
		}
	})
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute, DefaultWindow + 1, -DefaultWindow - 1} {
		t.Run(fmt.Sprintf("skew %v", skew), func(t *testing.T) {
			_, m1 := f.msg1(t, testNow.Add(skew))
			_, _, err := f.responder(testNow).respond(m1)
			he := wantReason(t, err, ReasonClockSkew)
			if he.Skew != skew || he.Peer != f.client.Public {
				t.Fatalf("Skew = %v, Peer = %v; want %v, client", he.Skew, he.Peer, skew)
			}
			if !strings.Contains(he.Error(), "clock-skew") {
				t.Fatalf("Error() = %q, want it to name clock skew", he.Error())
			}
		})
	}
	for _, skew := range []time.Duration{DefaultWindow, -DefaultWindow, 0} {
		t.Run(fmt.Sprintf("edge %v", skew), func(t *testing.T) {
			_, m1 := f.msg1(t, testNow.Add(skew))
			if _, _, err := f.responder(testNow).respond(m1); err != nil {
				t.Fatalf("respond with skew %v: %v", skew, err)
			}
		})
	}
	t.Run("failed checks use no cache space", func(t *testing.T) {
		g := newFixture(t)
		_, m1 := g.msg1(t, testNow.Add(time.Hour))
		g.responder(testNow).respond(m1)
		in, m1, _ := initiate(&stranger, g.server.Public, testNow, []byte(Prologue), nil)
		_ = in
		g.responder(testNow).respond(m1)
		if n := g.replay.Len(); n != 0 {
			t.Fatalf("replay cache holds %d entries after refused handshakes", n)
		}
	})
	t.Run("replay", func(t *testing.T) {
		g := newFixture(t)
		_, m1 := g.msg1(t, testNow)
		if _, _, err := g.responder(testNow).respond(m1); err != nil {
			t.Fatal(err)
		}
		_, _, err := g.responder(testNow.Add(time.Minute)).respond(m1)
		wantReason(t, err, ReasonReplay)
		// After the window the timestamp check refuses it first.
		_, _, err = g.responder(testNow.Add(2*DefaultWindow + time.Second)).respond(m1)
		wantReason(t, err, ReasonClockSkew)
	})
	t.Run("order: authorize before timestamp before replay", func(t *testing.T) {
		g := newFixture(t)
		_, m1 := g.msg1(t, testNow)
		if _, _, err := g.responder(testNow).respond(m1); err != nil {
			t.Fatal(err)
		}
		r := g.responder(testNow)
		r.authorize = func(PublicKey) error { return errors.New("revoked") }
		_, _, err := r.respond(m1)
		wantReason(t, err, ReasonUnknownKey)
		_, _, err = g.responder(testNow.Add(10 * time.Minute)).respond(m1)
		wantReason(t, err, ReasonClockSkew)
	})
	t.Run("cache full", func(t *testing.T) {
		g := newFixture(t)
		g.replay = NewReplayCache(time.Hour, 1)
		_, m1 := g.msg1(t, testNow)
		if _, _, err := g.responder(testNow).respond(m1); err != nil {
			t.Fatal(err)
		}
		_, m1b := g.msg1(t, testNow)
		_, _, err := g.responder(testNow).respond(m1b)
		wantReason(t, err, ReasonBusy)
	})
	t.Run("malformed timestamp", func(t *testing.T) {
		for _, ts := range [][]byte{
			append(appendTAI64N(nil, testNow)[:8], 0x3b, 0x9a, 0xca, 0x00), // 1e9 ns
			make([]byte, TimestampSize),                                    // label 0
			bytes.Repeat([]byte{0xff}, TimestampSize),                      // label >= 2^63
		} {
			hs, err := noise.NewHandshakeState(noiseConfig(true, &f.client, &f.server.Public, []byte(Prologue), nil))
			if err != nil {
				t.Fatal(err)
			}
			m1, _, _, err := hs.WriteMessage(nil, ts)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.responder(testNow).respond(m1)
			wantReason(t, err, ReasonMalformed)
		}
	})
	t.Run("wrong lengths", func(t *testing.T) {
		_, m1 := f.msg1(t, testNow)
		for _, n := range []int{0, 1, Msg1Size - 1, Msg1Size + 1, 65535} {
			b := make([]byte, n)
			copy(b, m1)
			_, _, err := f.responder(testNow).respond(b)
			wantReason(t, err, ReasonMalformed)
		}
	})
}

func TestTAI64N(t *testing.T) {
	for _, tm := range []time.Time{testNow, time.Unix(0, 0), time.Unix(1<<40, 999_999_999)} {
		got, err := parseTAI64N(appendTAI64N(nil, tm))
		if err != nil || !got.Equal(tm) {
			t.Errorf("parseTAI64N(appendTAI64N(%v)) = %v, %v", tm, got, err)
		}
	}
	if b := appendTAI64N(nil, time.Unix(0, 0)); !bytes.Equal(b, []byte{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("epoch = %x, want 400000000000000000000000", b)
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), make([]byte, 13)} {
		if _, err := parseTAI64N(bad); err == nil {
			t.Errorf("parseTAI64N(%x) succeeded", bad)
		}
	}
}

// TestLowOrderKeys sends each of the seven low-order points as the client's
// ephemeral and as its static key (TEST-CATALOG item 68); the server must
// refuse each one before any payload is accepted. The client side refuses
// them as the server's ephemeral (message 2) and as a pinned server key.
func TestLowOrderKeys(t *testing.T) {
	f := newFixture(t)
	for i := range lowOrderPoints {
		lo := lowOrderKey(t, i)
		t.Run("e "+lowOrderPoints[i][:8], func(t *testing.T) {
			_, m1 := f.msg1(t, testNow)
			copy(m1, lo[:])
			_, _, err := f.responder(testNow).respond(m1)
			wantReason(t, err, ReasonLowOrder)
		})
		t.Run("s "+lowOrderPoints[i][:8], func(t *testing.T) {
			// A client that claims a low-order static key; flynn uses
			// only its private half to compute ss.
			bad := KeyPair{Private: mustKeyPair(t).Private, Public: lo}
			g := *f
			g.client = bad
			in, m1, err := initiate(&bad, f.server.Public, testNow, []byte(Prologue), nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = in
			r := g.responder(testNow)
			r.authorize = func(PublicKey) error { return nil } // even an allow-all server refuses it
			_, _, err = r.respond(m1)
			wantReason(t, err, ReasonLowOrder)
		})
		t.Run("server e "+lowOrderPoints[i][:8], func(t *testing.T) {
			in, m1 := f.msg1(t, testNow)
			m2, _, err := f.responder(testNow).respond(m1)
			if err != nil {
				t.Fatal(err)
			}
			copy(m2, lo[:])
			_, err = in.finish(m2)
			wantReason(t, err, ReasonLowOrder)
		})
		t.Run("pinned "+lowOrderPoints[i][:8], func(t *testing.T) {
			_, _, err := initiate(&f.client, lo, testNow, []byte(Prologue), nil)
			wantReason(t, err, ReasonLowOrder)
		})
	}
}

// TestMsg1BitFlips flips every bit of message 1; each variant must be
// refused, and none may occupy replay-cache space (TEST-CATALOG item 65).
func TestMsg1BitFlips(t *testing.T) {
	f := newFixture(t)
	_, m1 := f.msg1(t, testNow)
	for bit := range len(m1) * 8 {
		b := bytes.Clone(m1)
		b[bit/8] ^= 1 << (bit % 8)
		_, _, err := f.responder(testNow).respond(b)
		var he *HandshakeError
		if !errors.As(err, &he) || (he.Reason != ReasonDecrypt && he.Reason != ReasonLowOrder) {
			t.Fatalf("bit %d flipped: respond error = %v, want decrypt failure", bit, err)
		}
	}
	if n := f.replay.Len(); n != 0 {
		t.Fatalf("replay cache holds %d entries", n)
	}
	if _, _, err := f.responder(testNow).respond(m1); err != nil {
		t.Fatalf("the intact message 1 is refused after the flips: %v", err)
	}
}

// TestMsg2BitFlips flips every bit of message 2; the client must refuse
// each variant.
func TestMsg2BitFlips(t *testing.T) {
	f := newFixture(t)
	cliRand := seq(0x10, KeySize)
	start := func() (*initiator, []byte) {
		in, m1, err := initiate(&f.client, f.server.Public, testNow, []byte(Prologue), bytes.NewReader(cliRand))
		if err != nil {
			t.Fatal(err)
		}
		f.replay = NewReplayCache(0, 0) // the same ephemeral every round
		r := f.responder(testNow)
		r.rng = bytes.NewReader(seq(0x50, KeySize))
		m2, _, err := r.respond(m1)
		if err != nil {
			t.Fatal(err)
		}
		return in, m2
	}
	_, m2 := start()
	for bit := range len(m2) * 8 {
		in, _ := start()
		b := bytes.Clone(m2)
		b[bit/8] ^= 1 << (bit % 8)
		_, err := in.finish(b)
		var he *HandshakeError
		if !errors.As(err, &he) || (he.Reason != ReasonDecrypt && he.Reason != ReasonLowOrder) {
			t.Fatalf("bit %d flipped: finish error = %v, want decrypt failure", bit, err)
		}
	}
	in, _ := start()
	if _, err := in.finish(m2); err != nil {
		t.Fatalf("intact message 2 refused: %v", err)
	}
}

func TestHandshakeMismatches(t *testing.T) {
	f := newFixture(t)
	t.Run("prologue", func(t *testing.T) {
		for _, p := range []string{"twinmx-dbd/0", "twinmx-dbd/2", "mailsys-dbd/1", ""} {
			_, m1, err := initiate(&f.client, f.server.Public, testNow, []byte(p), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.responder(testNow).respond(m1)
			wantReason(t, err, ReasonDecrypt)
		}
	})
	t.Run("wrong pinned server key", func(t *testing.T) {
		_, m1, err := initiate(&f.client, mustKeyPair(t).Public, testNow, []byte(Prologue), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = f.responder(testNow).respond(m1)
		wantReason(t, err, ReasonDecrypt)
	})
	t.Run("message 2 from another session", func(t *testing.T) {
		inA, _ := f.msg1(t, testNow)
		_, m1B := f.msg1(t, testNow)
		m2B, _, err := f.responder(testNow).respond(m1B)
		if err != nil {
			t.Fatal(err)
		}
		_, err = inA.finish(m2B)
		wantReason(t, err, ReasonDecrypt)
	})
	t.Run("server version", func(t *testing.T) {
		in, m1 := f.msg1(t, testNow)
		r := f.responder(testNow)
		r.payload.Version = 2
		m2, _, err := r.respond(m1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = in.finish(m2)
		wantReason(t, err, ReasonVersion)
	})
	t.Run("server frame limit too small", func(t *testing.T) {
		in, m1 := f.msg1(t, testNow)
		r := f.responder(testNow)
		r.payload.MaxFrame = MinMaxCiphertext - 1
		m2, _, err := r.respond(m1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = in.finish(m2)
		wantReason(t, err, ReasonMalformed)
	})
	t.Run("message 2 length", func(t *testing.T) {
		in, _ := f.msg1(t, testNow)
		_, err := in.finish(make([]byte, Msg2Size+1))
		wantReason(t, err, ReasonMalformed)
	})
}

// fuzzKeys are fixed so the seed corpus (a valid message 1) stays valid.
func fuzzFixture(t testing.TB) *fixture {
	client, server := goldenKeys(t)
	return &fixture{client: client, server: server}
}

// FuzzServerHandshakeMsg1 feeds arbitrary bytes as message 1 to the
// server's pure handshake step: it must never panic, and must accept only
// a message that authenticates.
func FuzzServerHandshakeMsg1(f *testing.F) {
	fx := fuzzFixture(f)
	in, m1, err := initiate(&fx.client, fx.server.Public, testNow, []byte(Prologue), bytes.NewReader(seq(0x81, KeySize)))
	if err != nil {
		f.Fatal(err)
	}
	_ = in
	f.Add(m1)
	f.Add([]byte{})
	f.Add(make([]byte, Msg1Size))
	lo := lowOrderKey(f, 3)
	f.Add(append(lo[:], m1[KeySize:]...))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fx.replay = NewReplayCache(0, 0)
		m2, s, err := fx.responder(testNow).respond(msg)
		if err != nil {
			var he *HandshakeError
			if !errors.As(err, &he) || he.Reason == "" {
				t.Fatalf("respond(%x) error %v is not a *HandshakeError", msg, err)
			}
			return
		}
		if len(m2) != Msg2Size || s == nil || s.peer != fx.client.Public {
			t.Fatalf("respond(%x) accepted: len(m2)=%d, session %v", msg, len(m2), s)
		}
	})
}
