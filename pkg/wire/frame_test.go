package wire

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestDecodeFrame(t *testing.T) {
	long := make([]byte, FrameHeaderSize+MaxFrameData+1)
	tests := []struct {
		name    string
		in      []byte
		want    Frame
		wantErr error
	}{
		{"empty", nil, Frame{}, ErrBadFrame},
		{"short header", []byte{0, 0, 0, 1}, Frame{}, ErrBadFrame},
		{"header only", []byte{0, 0, 0, 0, 7}, Frame{ReqID: 7, Data: []byte{}}, nil},
		{"data", []byte{1, 1, 2, 3, 4, 'h', 'i'}, Frame{Flags: FlagMore, ReqID: 0x01020304, Data: []byte("hi")}, nil},
		{"cancel", []byte{4, 0, 0, 0, 9}, Frame{Flags: FlagCancel, ReqID: 9, Data: []byte{}}, nil},
		{"more and cancel", []byte{5, 0, 0, 0, 9}, Frame{Flags: FlagMore | FlagCancel, ReqID: 9, Data: []byte{}}, nil},
		{"close", []byte{2, 0, 0, 0, 0}, Frame{Flags: FlagClose, Data: []byte{}}, nil},
		{"close with request id", []byte{2, 0, 0, 0, 1}, Frame{}, ErrBadFrame},
		{"close with data", []byte{2, 0, 0, 0, 0, 'x'}, Frame{}, ErrBadFrame},
		{"close with more", []byte{3, 0, 0, 0, 0}, Frame{}, ErrBadFrame},
		{"reserved flag 8", []byte{8, 0, 0, 0, 0}, Frame{}, ErrBadFrame},
		{"reserved flag 0x80", []byte{0x81, 0, 0, 0, 0}, Frame{}, ErrBadFrame},
		{"max id", []byte{0, 0xff, 0xff, 0xff, 0xff}, Frame{ReqID: 0xffffffff, Data: []byte{}}, nil},
		{"too large", long, Frame{}, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFrame(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecodeFrame(%x) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Flags != tt.want.Flags || got.ReqID != tt.want.ReqID || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("DecodeFrame(%x) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      Frame
		want    []byte
		wantErr error
	}{
		{"plain", Frame{ReqID: 1, Data: []byte("ab")}, []byte{0, 0, 0, 0, 1, 'a', 'b'}, nil},
		{"more", Frame{Flags: FlagMore, ReqID: 0xa0b0c0d0}, []byte{1, 0xa0, 0xb0, 0xc0, 0xd0}, nil},
		{"close", Frame{Flags: FlagClose}, []byte{2, 0, 0, 0, 0}, nil},
		{"close with data", Frame{Flags: FlagClose, Data: []byte("x")}, nil, ErrBadFrame},
		{"reserved", Frame{Flags: 0x10}, nil, ErrBadFrame},
		{"max data", Frame{Data: make([]byte, MaxFrameData)}, nil, nil},
		{"too large", Frame{Data: make([]byte, MaxFrameData+1)}, nil, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got, err := AppendFrame(prefix, tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AppendFrame(%+v) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !bytes.Equal(got, prefix) {
					t.Fatalf("AppendFrame(%+v) failed but changed the buffer to %x", tt.in, got)
				}
				return
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("AppendFrame(%+v) lost the prefix: %x", tt.in, got)
			}
			enc := got[len(prefix):]
			if tt.want != nil && !bytes.Equal(enc, tt.want) {
				t.Fatalf("AppendFrame(%+v) = %x, want %x", tt.in, enc, tt.want)
			}
			back, err := DecodeFrame(enc)
			if err != nil || back.Flags != tt.in.Flags || back.ReqID != tt.in.ReqID || !bytes.Equal(back.Data, tt.in.Data) {
				t.Fatalf("DecodeFrame(AppendFrame(%+v)) = %+v, %v", tt.in, back, err)
			}
		})
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		in   Flags
		want string
	}{
		{0, "0"},
		{FlagMore, "more"},
		{FlagMore | FlagCancel, "more|cancel"},
		{FlagClose | 0x40, "close|0x40"},
		{0x80, "0x80"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint8(tt.in), got, tt.want)
		}
	}
}

// FuzzDecodeFrame checks that DecodeFrame never panics and that whatever it
// accepts re-encodes to the same bytes (one encoding per frame).
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 1, 'd', 'a', 't', 'a'})
	f.Add([]byte{2, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 0})
	f.Add([]byte{4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xff, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, p []byte) {
		fr, err := DecodeFrame(p)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("DecodeFrame(%x) error %v wraps no frame sentinel", p, err)
			}
			return
		}
		enc, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("AppendFrame(DecodeFrame(%x)) error %v", p, err)
		}
		if !bytes.Equal(enc, p) {
			t.Fatalf("AppendFrame(DecodeFrame(%x)) = %x", p, enc)
		}
	})
}

func ExampleAppendFrame() {
	b, err := AppendFrame(nil, Frame{Flags: FlagMore, ReqID: 7, Data: []byte("chunk")})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", b)
	f, err := DecodeFrame(b)
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Flags, f.ReqID, string(f.Data))
	// Output:
	// 01 00 00 00 07 63 68 75 6e 6b
	// more 7 chunk
}
