package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Transport frame layout (docs/wire.md §3). On the TCP stream each frame is
//
//	u16 big-endian length ‖ Noise transport ciphertext (length bytes)
//
// and the ciphertext decrypts to the plaintext
//
//	u8 flags ‖ u32 big-endian request id ‖ data
//
// This file holds the plaintext codec only; it does no I/O and no crypto.

// Specification constants. Changing any of them changes the protocol.
const (
	// LengthSize is the size of the length prefix in front of every
	// handshake message and transport frame.
	LengthSize = 2
	// TagSize is the AEAD (ChaCha20-Poly1305) tag that Noise adds to each
	// ciphertext.
	TagSize = 16
	// FrameHeaderSize is the plaintext header of a frame: flags and
	// request id.
	FrameHeaderSize = 1 + 4
	// MaxCiphertext is the largest transport ciphertext (the Noise message
	// size limit, and the largest value of the u16 length prefix).
	MaxCiphertext = 65535
	// MinCiphertext is the smallest valid transport ciphertext: a frame
	// header with no data, plus the tag.
	MinCiphertext = TagSize + FrameHeaderSize
	// MaxFrameData is the largest number of data bytes in one frame.
	MaxFrameData = MaxCiphertext - TagSize - FrameHeaderSize
)

// Flags are the bits of a frame's first plaintext byte. Bits not defined
// here are reserved: they must be zero, and a frame that sets one is
// malformed.
type Flags uint8

// Frame flags.
const (
	// FlagMore marks a frame after which more frames of the same message
	// (same request id) follow. The last frame of a message has it clear.
	FlagMore Flags = 1
	// FlagClose is the authenticated end of the session. A CLOSE frame has
	// request id 0, no data and no other flag. It is sent only by
	// Conn.Close; the reader sees it as io.EOF.
	FlagClose Flags = 2
	// FlagCancel abandons the request id: the sender will send no more
	// frames for it and wants no more answers for it.
	FlagCancel Flags = 4

	flagsKnown = FlagMore | FlagClose | FlagCancel
)

// String returns the set flags as "more|cancel", or "0" if none is set.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var s string
	for _, b := range []struct {
		f    Flags
		name string
	}{{FlagMore, "more"}, {FlagClose, "close"}, {FlagCancel, "cancel"}} {
		if f&b.f != 0 {
			if s != "" {
				s += "|"
			}
			s += b.name
		}
	}
	if rest := f &^ flagsKnown; rest != 0 {
		if s != "" {
			s += "|"
		}
		s += fmt.Sprintf("%#x", uint8(rest))
	}
	return s
}

// Frame is the plaintext of one transport frame.
type Frame struct {
	Flags Flags
	ReqID uint32
	Data  []byte // at most MaxFrameData bytes
}

// Frame errors. Use errors.Is: the returned errors wrap these with detail.
var (
	// ErrFrameTooLarge is returned for a frame whose data exceeds
	// MaxFrameData, or whose ciphertext exceeds the receiver's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrBadFrame is returned for a frame that is too short, sets a
	// reserved flag, or is a CLOSE frame carrying anything else.
	ErrBadFrame = errors.New("wire: malformed frame")
)

// check validates f against the frame rules shared by the encoder and the
// decoder.
func (f Frame) check() error {
	if len(f.Data) > MaxFrameData {
		return fmt.Errorf("%w: %d data bytes, at most %d", ErrFrameTooLarge, len(f.Data), MaxFrameData)
	}
	if f.Flags&^flagsKnown != 0 {
		return fmt.Errorf("%w: reserved flag bits %#x", ErrBadFrame, uint8(f.Flags&^flagsKnown))
	}
	if f.Flags&FlagClose != 0 && (f.Flags != FlagClose || f.ReqID != 0 || len(f.Data) != 0) {
		return fmt.Errorf("%w: CLOSE frame with flags %s, request id %d, %d data bytes",
			ErrBadFrame, f.Flags, f.ReqID, len(f.Data))
	}
	return nil
}

// AppendFrame appends the plaintext encoding of f to b and returns the
// extended slice. It fails, appending nothing, if f.Data is longer than
// MaxFrameData, if f sets a reserved flag, or if f is a CLOSE frame with
// anything else in it.
func AppendFrame(b []byte, f Frame) ([]byte, error) {
	if err := f.check(); err != nil {
		return b, err
	}
	b = append(b, byte(f.Flags))
	b = binary.BigEndian.AppendUint32(b, f.ReqID)
	return append(b, f.Data...), nil
}

// DecodeFrame decodes the plaintext of one frame. The returned Data aliases
// p. It accepts exactly the encodings AppendFrame produces.
func DecodeFrame(p []byte) (Frame, error) {
	if len(p) < FrameHeaderSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, header is %d", ErrBadFrame, len(p), FrameHeaderSize)
	}
	f := Frame{
		Flags: Flags(p[0]),
		ReqID: binary.BigEndian.Uint32(p[1:FrameHeaderSize]),
		Data:  p[FrameHeaderSize:],
	}
	if err := f.check(); err != nil {
		return Frame{}, err
	}
	return f, nil
}
