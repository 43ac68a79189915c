package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flynn/noise"
)

// The handshake as pure functions over []byte (docs/wire.md §2): the client
// calls initiate and then (*initiator).finish; the server calls respond.
// None of them does I/O; conn.go moves the bytes.

// Specification constants of the handshake. Changing any of them changes
// the protocol.
const (
	// Prologue is mixed into the Noise handshake hash by both sides. A peer
	// with another prologue (another protocol version) fails the handshake:
	// the server cannot decrypt its first message.
	Prologue = "twinmx-dbd/1"
	// ProtocolVersion is the version the server announces in message 2.
	ProtocolVersion = 1

	// TimestampSize is the TAI64N timestamp, the whole payload of message 1.
	TimestampSize = 12
	// Msg1Size is the exact size of handshake message 1 (client to server,
	// IK "e, es, s, ss"): e (32) ‖ encrypted s (32+16) ‖ encrypted
	// timestamp (12+16).
	Msg1Size = KeySize + KeySize + TagSize + TimestampSize + TagSize
	// Msg2PayloadSize is the plaintext payload of message 2: version (u8) ‖
	// max ciphertext the server accepts (u16 big-endian).
	Msg2PayloadSize = 1 + 2
	// Msg2Size is the exact size of handshake message 2 (server to client,
	// IK "e, ee, se"): e (32) ‖ encrypted payload (3+16).
	Msg2Size = KeySize + Msg2PayloadSize + TagSize

	// MinMaxCiphertext is the smallest receive limit a server may announce.
	MinMaxCiphertext = 1024

	// tai64Base is the TAI64 label of the Unix epoch (2^62). Labels are
	// 2^62 + POSIX seconds: no leap-second offset, since both ends only
	// compare the value with a POSIX clock.
	tai64Base = uint64(1) << 62
)

// Defaults for ServerConfig and ClientConfig.
const (
	DefaultWindow           = 2 * time.Minute
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultRekeyFrames      = 1 << 20
)

// Reason is the cause of a failed handshake, from a fixed set, so it can be
// a metric label.
type Reason string

// Handshake failure reasons.
const (
	ReasonTimeout    Reason = "timeout"     // the handshake deadline passed
	ReasonCanceled   Reason = "canceled"    // the context was canceled
	ReasonClosed     Reason = "closed"      // the peer closed or reset the connection, or I/O failed
	ReasonMalformed  Reason = "malformed"   // wrong length prefix, or a bad authenticated payload
	ReasonDecrypt    Reason = "decrypt"     // a handshake message failed authentication (wrong key, prologue or tampering)
	ReasonLowOrder   Reason = "low-order"   // a peer key is a low-order point
	ReasonUnknownKey Reason = "unknown-key" // Authorize refused the client's static key
	ReasonClockSkew  Reason = "clock-skew"  // the client's timestamp is outside the window
	ReasonReplay     Reason = "replay"      // the client's ephemeral key was seen before
	ReasonBusy       Reason = "busy"        // the replay cache is full
	ReasonVersion    Reason = "version"     // the server speaks another protocol version
)

// HandshakeError describes a failed handshake. The peer is told nothing:
// the connection is just closed. Use errors.As to get it from the error
// ServerHandshake or ClientHandshake returns.
type HandshakeError struct {
	Reason Reason
	// Peer is the peer's static key if the handshake got far enough to
	// authenticate it (server side, reasons unknown-key, clock-skew,
	// replay, busy, malformed); otherwise zero.
	Peer PublicKey
	// Skew is the peer's clock minus ours, for Reason clock-skew.
	Skew time.Duration
	Err  error
}

func (e *HandshakeError) Error() string {
	s := "wire: handshake failed: " + string(e.Reason)
	if e.Reason == ReasonClockSkew {
		s += fmt.Sprintf(" (peer clock %+v off)", e.Skew)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func hsError(r Reason, err error) *HandshakeError { return &HandshakeError{Reason: r, Err: err} }

// errLowOrder marks a Diffie-Hellman failure, which with X25519 means the
// peer's public key is a low-order point.
var errLowOrder = errors.New("low-order public key")

// checkedDH is flynn/noise's X25519 with its error made recognisable.
// curve25519.X25519 refuses an all-zero output (Noise §14 "misusing public
// keys as secrets"); wrapping the error lets the handshake report it as
// Reason low-order instead of a generic failure. The name and behaviour are
// otherwise those of noise.DH25519.
type checkedDH struct{}

func (checkedDH) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	return noise.DH25519.GenerateKeypair(r)
}

func (checkedDH) DH(priv, pub []byte) ([]byte, error) {
	out, err := noise.DH25519.DH(priv, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLowOrder, err)
	}
	return out, nil
}

func (checkedDH) DHLen() int     { return noise.DH25519.DHLen() }
func (checkedDH) DHName() string { return noise.DH25519.DHName() }

// suite is Noise_IK_25519_ChaChaPoly_BLAKE2s's cipher suite.
var suite = noise.NewCipherSuite(checkedDH{}, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// noiseConfig returns the flynn configuration of one side of the IK
// handshake. peer is the responder's static key on the initiator side and
// nil on the responder side. The key bytes are copied.
func noiseConfig(initiator bool, static *KeyPair, peer *PublicKey, prologue []byte, rng io.Reader) noise.Config {
	cfg := noise.Config{
		CipherSuite: suite,
		Random:      rng,
		Pattern:     noise.HandshakeIK,
		Initiator:   initiator,
		Prologue:    prologue,
		StaticKeypair: noise.DHKey{
			Private: append([]byte(nil), static.Private[:]...),
			Public:  append([]byte(nil), static.Public[:]...),
		},
	}
	if peer != nil {
		cfg.PeerStatic = append([]byte(nil), peer[:]...)
	}
	return cfg
}

// classify maps a flynn handshake error to a Reason.
func classify(err error) *HandshakeError {
	if errors.Is(err, errLowOrder) {
		return hsError(ReasonLowOrder, err)
	}
	if errors.Is(err, noise.ErrShortMessage) {
		return hsError(ReasonMalformed, err)
	}
	return hsError(ReasonDecrypt, err)
}

// session is the result of a completed handshake.
type session struct {
	send, recv *noise.CipherState
	id         []byte    // handshake hash h (channel binding)
	peer       PublicKey // the peer's static key
	sendMax    int       // largest ciphertext the peer accepts
	recvMax    int       // largest ciphertext we accept
}

// msg2Payload is the plaintext payload of handshake message 2.
type msg2Payload struct {
	Version  uint8
	MaxFrame uint16 // largest transport ciphertext the server accepts
}

func (p msg2Payload) append(b []byte) []byte {
	b = append(b, p.Version)
	return binary.BigEndian.AppendUint16(b, p.MaxFrame)
}

func parseMsg2Payload(b []byte) (msg2Payload, error) {
	if len(b) != Msg2PayloadSize {
		return msg2Payload{}, fmt.Errorf("message 2 payload is %d bytes, want %d", len(b), Msg2PayloadSize)
	}
	return msg2Payload{Version: b[0], MaxFrame: binary.BigEndian.Uint16(b[1:])}, nil
}

// appendTAI64N appends t as a 12-byte TAI64N label: u64 big-endian
// 2^62 + seconds ‖ u32 big-endian nanoseconds.
func appendTAI64N(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, tai64Base+uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// parseTAI64N decodes a 12-byte TAI64N label.
func parseTAI64N(b []byte) (time.Time, error) {
	if len(b) != TimestampSize {
		return time.Time{}, fmt.Errorf("timestamp is %d bytes, want %d", len(b), TimestampSize)
	}
	sec := binary.BigEndian.Uint64(b)
	nsec := binary.BigEndian.Uint32(b[8:])
	if sec < tai64Base || sec >= 1<<63 || nsec >= 1e9 {
		return time.Time{}, fmt.Errorf("timestamp %x is not a valid TAI64N label", b)
	}
	return time.Unix(int64(sec-tai64Base), int64(nsec)), nil
}

// initiator is the client's handshake state between message 1 and 2.
type initiator struct {
	hs     *noise.HandshakeState
	server PublicKey
}

// initiate starts a client handshake: it returns the state to finish with
// and message 1, which carries the timestamp now and nothing else.
func initiate(static *KeyPair, server PublicKey, now time.Time, prologue []byte, rng io.Reader) (*initiator, []byte, error) {
	hs, err := noise.NewHandshakeState(noiseConfig(true, static, &server, prologue, rng))
	if err != nil {
		return nil, nil, hsError(ReasonMalformed, err)
	}
	ts := appendTAI64N(make([]byte, 0, TimestampSize), now)
	msg1, _, _, err := hs.WriteMessage(make([]byte, 0, Msg1Size), ts)
	if err != nil {
		return nil, nil, classify(err)
	}
	if len(msg1) != Msg1Size {
		// Unreachable with the fixed suite and pattern.
		return nil, nil, hsError(ReasonMalformed, fmt.Errorf("message 1 is %d bytes, want %d", len(msg1), Msg1Size))
	}
	return &initiator{hs: hs, server: server}, msg1, nil
}

// finish reads message 2 and completes the client handshake.
func (in *initiator) finish(msg2 []byte) (*session, error) {
	if len(msg2) != Msg2Size {
		return nil, hsError(ReasonMalformed, fmt.Errorf("message 2 is %d bytes, want %d", len(msg2), Msg2Size))
	}
	payload, send, recv, err := in.hs.ReadMessage(make([]byte, 0, Msg2PayloadSize), msg2)
	if err != nil {
		return nil, classify(err)
	}
	if send == nil || recv == nil {
		return nil, hsError(ReasonMalformed, errors.New("handshake not complete after message 2"))
	}
	p, err := parseMsg2Payload(payload)
	if err != nil {
		return nil, hsError(ReasonMalformed, err)
	}
	if p.Version != ProtocolVersion {
		return nil, hsError(ReasonVersion, fmt.Errorf("server speaks version %d, want %d", p.Version, ProtocolVersion))
	}
	if p.MaxFrame < MinMaxCiphertext {
		return nil, hsError(ReasonMalformed, fmt.Errorf("server frame limit %d below %d", p.MaxFrame, MinMaxCiphertext))
	}
	return &session{
		send:    send,
		recv:    recv,
		id:      append([]byte(nil), in.hs.ChannelBinding()...),
		peer:    in.server,
		sendMax: int(p.MaxFrame),
		recvMax: MaxCiphertext,
	}, nil
}

// responder holds what the server's pure handshake step needs.
type responder struct {
	static    *KeyPair
	previous  []KeyPair // older keys still accepted (ServerConfig.Previous)
	authorize func(PublicKey) error
	replay    *ReplayCache
	now       time.Time // the server's clock when message 1 arrived
	window    time.Duration
	payload   msg2Payload
	prologue  []byte
	rng       io.Reader // nil: crypto/rand
}

// readMsg1 decrypts message 1 with the server's key, or, failing that,
// with each previous key (a rotation in progress): message 1 is encrypted
// to the key the client pins, and only the right private key opens its
// static-key field. It returns the handshake state of the key that
// opened it and the payload (the timestamp).
func (r *responder) readMsg1(msg1 []byte) (*noise.HandshakeState, []byte, error) {
	var last error
	for i := -1; i < len(r.previous); i++ {
		key := r.static
		if i >= 0 {
			key = &r.previous[i]
		}
		hs, err := noise.NewHandshakeState(noiseConfig(false, key, nil, r.prologue, r.rng))
		if err != nil {
			return nil, nil, hsError(ReasonMalformed, err)
		}
		ts, _, _, err := hs.ReadMessage(make([]byte, 0, TimestampSize), msg1)
		if err == nil {
			return hs, ts, nil
		}
		last = err
		// A low-order ephemeral key or a short message fails the same
		// with every key.
		if errors.Is(err, errLowOrder) || errors.Is(err, noise.ErrShortMessage) {
			break
		}
	}
	return nil, nil, classify(last)
}

// respond checks message 1 and, if it is acceptable, returns message 2 and
// the session. The checks run in this order: decrypt (which also rejects
// low-order keys), authorize, timestamp within ±window of now, ephemeral
// key not seen before. The ephemeral key is recorded only if every earlier
// check passed, so only authorised clients with fresh timestamps use cache
// space. It never panics, whatever msg1 holds.
func (r *responder) respond(msg1 []byte) ([]byte, *session, error) {
	if len(msg1) != Msg1Size {
		return nil, nil, hsError(ReasonMalformed, fmt.Errorf("message 1 is %d bytes, want %d", len(msg1), Msg1Size))
	}
	hs, ts, err := r.readMsg1(msg1)
	if err != nil {
		return nil, nil, err
	}
	peer := PublicKey(hs.PeerStatic())
	fail := func(reason Reason, err error) ([]byte, *session, error) {
		return nil, nil, &HandshakeError{Reason: reason, Peer: peer, Err: err}
	}
	if err := r.authorize(peer); err != nil {
		return fail(ReasonUnknownKey, err)
	}
	sent, err := parseTAI64N(ts)
	if err != nil {
		return fail(ReasonMalformed, err)
	}
	if skew := sent.Sub(r.now); skew > r.window || skew < -r.window {
		return nil, nil, &HandshakeError{
			Reason: ReasonClockSkew, Peer: peer, Skew: skew,
			Err: fmt.Errorf("timestamp %s is outside ±%s of %s",
				sent.UTC().Format(time.RFC3339Nano), r.window, r.now.UTC().Format(time.RFC3339Nano)),
		}
	}
	if err := r.replay.admit(PublicKey(hs.PeerEphemeral()), r.now); err != nil {
		if errors.Is(err, errReplayFull) {
			return fail(ReasonBusy, err)
		}
		return fail(ReasonReplay, err)
	}
	msg2, cs1, cs2, err := hs.WriteMessage(make([]byte, 0, Msg2Size), r.payload.append(nil))
	if err != nil {
		return fail(classify(err).Reason, err)
	}
	if cs1 == nil || cs2 == nil || len(msg2) != Msg2Size {
		// Unreachable with the IK pattern.
		return fail(ReasonMalformed, errors.New("handshake not complete after message 2"))
	}
	return msg2, &session{
		send:    cs2, // cs1 encrypts initiator to responder
		recv:    cs1,
		id:      append([]byte(nil), hs.ChannelBinding()...),
		peer:    peer,
		sendMax: MaxCiphertext,
		recvMax: int(r.payload.MaxFrame),
	}, nil
}
