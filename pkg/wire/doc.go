// Package wire is the dbd protocol (SPEC §4, docs/wire.md): key files, an
// authenticated key exchange, encrypted framing over TCP, and the message
// codec carried in the frames.
//
// # Security contract
//
// A session is Noise_IK_25519_ChaChaPoly_BLAKE2s (github.com/flynn/noise)
// with the prologue "twinmx-dbd/1". The client knows and pins the server's
// static key; the server learns the client's static key in the first
// message and accepts it only if ServerConfig.Authorize does. Both sides
// use fresh ephemeral keys, so recorded traffic stays secret after a static
// key is stolen (forward secrecy). Low-order public keys are refused.
//
// The first handshake message carries only a TAI64N timestamp, never a
// request: it is the one message of IK an attacker can replay. The server
// accepts it only within ±Window (default 2 minutes) of its clock and only
// if its ephemeral key is not in the ReplayCache, which keeps keys for
// 2×Window. A replayed message cannot yield a usable session anyway: that
// needs the client's ephemeral private key.
//
// After the handshake each direction has its own key and an implicit
// 64-bit counter nonce. The counter is never sent, never reused, never
// wraps, and never advances on a failed decryption. So a frame that is
// tampered with, replayed, reordered, dropped, reflected back to its sender
// or spliced from another session fails authentication.
//
// # Usage limits
//
//   - A frame's ciphertext is at most 65535 bytes (MaxCiphertext), so a
//     frame carries at most MaxFrameData (65514) data bytes, or less if the
//     server announced a smaller limit (Conn.MaxFrameData). Larger messages
//     are split into frames with FlagMore. A receiver checks the length
//     prefix before reading the frame and refuses lengths below
//     MinCiphertext or above its limit; it allocates buffer space only as
//     bytes arrive.
//   - Each direction rekeys (Noise Rekey) after every RekeyFrames frames
//     (default 2^20), in lockstep on both sides with no signalling, so the
//     value must be equal on both sides. Clients should also reconnect
//     after a while (SPEC: 10 minutes), which renews every key.
//   - The nonce space (2^64-1 frames per direction) cannot be exhausted in
//     practice; if it is, the last nonce is kept for CLOSE, WriteFrame
//     returns ErrNonceExhausted and the session must be replaced.
//
// # What happens on a bad frame
//
// Any read failure — a stream ending without a CLOSE frame (ErrTruncated),
// a frame that fails authentication (ErrDecrypt), a length outside the
// limits (ErrBadFrame, ErrFrameTooLarge), a malformed plaintext — kills the
// Conn: the socket is closed at once without a CLOSE frame, no later frame
// is delivered, and every later call returns the same error. There is no
// resynchronisation. The only clean end of a session is a received CLOSE
// frame, which ReadFrame reports as io.EOF. Upper layers must treat a
// request without a complete answer as failed, never as empty success.
//
// A failed handshake closes the connection without telling the peer why;
// the local side gets a *HandshakeError whose Reason is a bounded label
// for metrics and logs (clock skew is reported with its size).
//
// # Concurrency
//
// ReplayCache is safe for concurrent use and shared by all connections of
// one server. A Conn allows concurrent writers (serialised), one reader at a
// time, and Close from any goroutine. The pure functions (AppendFrame,
// DecodeFrame, ParsePublicKey) have no shared state.
package wire
