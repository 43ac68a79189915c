package model

import (
	"errors"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type verdictArgs struct {
	src   Source
	epoch uint32
	v     Verdict
}

func (a verdictArgs) enc() uint64 { return EncodeVerdict(a.src, a.epoch, a.v) }

// TestVerdictOrder proves the ordering claims of SPEC §3 on the encoded
// values: in each case the plain uint64 maximum picks want.
func TestVerdictOrder(t *testing.T) {
	op, fl := SourceOperator, SourceFilter
	tests := []struct {
		name string
		a, b verdictArgs // b must dominate a
	}{
		{"operator outranks filter at a later epoch", verdictArgs{fl, math.MaxUint32, Reject}, verdictArgs{op, 0, Accept}},
		{"operator reject outranks filter accept", verdictArgs{fl, 100, Accept}, verdictArgs{op, 1, Reject}},
		{"operator retry outranks filter accept", verdictArgs{fl, 100, Accept}, verdictArgs{op, 1, Retry}},
		{"later operator verdict wins", verdictArgs{op, 10, Accept}, verdictArgs{op, 11, Reject}},
		{"later operator verdict wins, reversed", verdictArgs{op, 10, Reject}, verdictArgs{op, 11, Accept}},
		{"later filter verdict wins", verdictArgs{fl, 10, Accept}, verdictArgs{fl, 11, Reject}},
		{"later filter retry wins", verdictArgs{fl, 10, Reject}, verdictArgs{fl, 11, Retry}},
		{"epoch bits do not spill into the source", verdictArgs{fl, math.MaxUint32, Accept}, verdictArgs{op, 0, Retry}},
		{"same epoch: reject replaces retry", verdictArgs{fl, 5, Retry}, verdictArgs{fl, 5, Reject}},
		{"same epoch: accept replaces retry", verdictArgs{fl, 5, Retry}, verdictArgs{fl, 5, Accept}},
		{"same epoch: accept beats reject (never reject a wanted mail)", verdictArgs{fl, 5, Reject}, verdictArgs{fl, 5, Accept}},
		{"same operator epoch: accept beats reject", verdictArgs{op, 5, Reject}, verdictArgs{op, 5, Accept}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.a.enc(), tt.b.enc()
			if got := max(a, b); got != b {
				t.Errorf("max(%#x %v, %#x %v) = %#x, want %#x", a, tt.a, b, tt.b, got, b)
			}
			var s State
			if _, err := s.Set(ColVerdict, b); err != nil {
				t.Fatal(err)
			}
			if changed, _ := s.Set(ColVerdict, a); changed || s.Col(ColVerdict) != b {
				t.Errorf("Set(%v) after %v changed the verdict to %#x", tt.a, tt.b, s.Col(ColVerdict))
			}
		})
	}
	if EncodeVerdict(fl, 0, Retry) == 0 {
		t.Error("the weakest verdict encodes to 0, which means no verdict")
	}
}

func TestVerdictRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := rapid.SampledFrom([]Source{SourceFilter, SourceOperator}).Draw(t, "src")
		epoch := rapid.Uint32().Draw(t, "epoch")
		v := rapid.SampledFrom([]Verdict{Retry, Reject, Accept}).Draw(t, "v")
		x := EncodeVerdict(src, epoch, v)
		gs, ge, gv, ok := DecodeVerdict(x)
		if !ok || gs != src || ge != epoch || gv != v {
			t.Fatalf("DecodeVerdict(EncodeVerdict(%v, %d, %v)) = %v, %d, %v, %v", src, epoch, v, gs, ge, gv, ok)
		}
		if err := CheckColumn(ColVerdict, x); err != nil {
			t.Fatalf("CheckColumn(verdict, %#x): %v", x, err)
		}
	})
}

func TestDecodeVerdictInvalid(t *testing.T) {
	valid := EncodeVerdict(SourceOperator, 7, Accept)
	tests := []struct {
		name string
		x    uint64
	}{
		{"zero is no verdict", 0},
		{"unknown verdict", EncodeVerdict(SourceFilter, 1, 0)},
		{"verdict out of range", EncodeVerdict(SourceFilter, 1, Accept+1)},
		{"unknown source", EncodeVerdict(0x20, 1, Accept)},
		{"reserved bits", valid | 1<<48},
		{"all ones", math.MaxUint64},
	}
	for _, tt := range tests {
		if _, _, _, ok := DecodeVerdict(tt.x); ok {
			t.Errorf("%s: DecodeVerdict(%#x) ok, want not ok", tt.name, tt.x)
		}
		if tt.x != 0 {
			if err := CheckColumn(ColVerdict, tt.x); !errors.Is(err, ErrBadValue) {
				t.Errorf("%s: CheckColumn(verdict, %#x) = %v, want ErrBadValue", tt.name, tt.x, err)
			}
		}
	}
}

func TestVerdictNames(t *testing.T) {
	for _, v := range []Verdict{Retry, Reject, Accept} {
		got, err := ParseVerdict(v.String())
		if err != nil || got != v {
			t.Errorf("ParseVerdict(%q) = %v, %v; want %v", v.String(), got, err, v)
		}
	}
	for _, s := range []string{"", "ACCEPT", "spam", "verdict(4)"} {
		if _, err := ParseVerdict(s); !errors.Is(err, ErrBadVerdict) {
			t.Errorf("ParseVerdict(%q) error = %v, want ErrBadVerdict", s, err)
		}
	}
	for _, s := range []Source{SourceFilter, SourceOperator} {
		got, err := ParseSource(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSource(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
	if _, err := ParseSource("user"); !errors.Is(err, ErrBadVerdict) {
		t.Errorf("ParseSource(user) error = %v, want ErrBadVerdict", err)
	}
	if got := Verdict(9).String(); got != "verdict(9)" {
		t.Errorf("Verdict(9).String() = %q", got)
	}
	if got := Source(9).String(); got != "source(9)" {
		t.Errorf("Source(9).String() = %q", got)
	}
	if !(SourceFilter < SourceOperator) {
		t.Error("SourceFilter must rank below SourceOperator")
	}
}

func TestFlags(t *testing.T) {
	for _, col := range []string{ColAcknowledged, ColBackedUp, ColDeleted} {
		if err := CheckName(col); err != nil {
			t.Errorf("column name %q: %v", col, err)
		}
		for _, v := range []uint64{0, FlagSet} {
			if err := CheckColumn(col, v); err != nil {
				t.Errorf("CheckColumn(%s, %d) = %v", col, v, err)
			}
		}
		if err := CheckColumn(col, 2); !errors.Is(err, ErrBadValue) {
			t.Errorf("CheckColumn(%s, 2) = %v, want ErrBadValue", col, err)
		}
		// Set outranks unset: a site that still has the row present cannot
		// undo a deletion made on the other site.
		deleted, present := State{Cols: map[string]uint64{col: FlagSet}}, State{}
		if got := Merge(present, deleted).Col(col); got != FlagSet {
			t.Errorf("Merge(present, set %s) = %d, want %d", col, got, FlagSet)
		}
	}
	if err := CheckName(ColVerdict); err != nil {
		t.Errorf("column name %q: %v", ColVerdict, err)
	}
	if err := CheckColumn("other", math.MaxUint64); err != nil {
		t.Errorf("CheckColumn(other) = %v, want nil", err)
	}
}

func TestEpoch(t *testing.T) {
	tests := []struct {
		t    time.Time
		want uint32
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(-5, 0), 0},
		{time.Unix(1_700_000_000, 999), 1_700_000_000},
		{time.Unix(1<<32+10, 0), math.MaxUint32},
	}
	for _, tt := range tests {
		if got := Epoch(tt.t); got != tt.want {
			t.Errorf("Epoch(%v) = %d, want %d", tt.t, got, tt.want)
		}
	}
}
