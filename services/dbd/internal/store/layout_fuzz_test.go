package store

import (
	"bytes"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
)

// FuzzLayoutDecoders feeds arbitrary bytes, as a damaged disk or a bug
// could leave them under a key, to the decoders of dbd's stored values:
// row metas (decodeRowMeta, decodeRowMetaAlias, splitRowMeta), child
// index entries and change-log entries. None may panic, and what they
// accept must be what the encoders would write:
//   - a meta that decodes re-encodes to a value that decodes the same;
//   - splitRowMeta (op mails' reader) agrees with decodeRowMetaAlias
//     (every other reader) on whether a value is valid and on what it
//     holds: the numbers, the state in its first stateLen bytes after
//     them, the inline content after that;
//   - a change entry that decodes re-encodes to the same bytes;
//   - a child index entry is the row key then a meta that decodes.
func FuzzLayoutDecoders(f *testing.F) {
	k := model.KeyOf(model.Body, []byte("fuzz"))
	st := model.State{Cols: map[string]uint64{"seen": 3, "verdict": 2}, Counters: map[string]map[string]uint64{"hits": {"a": 1, "b": 7}}}
	metas := []rowMeta{
		{RowNo: 1, Size: 5, Stamp: 9, Inline: []byte("hello")},
		{RowNo: 1 << 40, Size: 70 << 10, Stamp: 1<<63 + 5, State: st},
		{RowNo: 7, Size: 3, Stamp: 1, State: st, Inline: []byte("abc")},
		{},
	}
	for _, m := range metas {
		v := m.encode()
		f.Add(v)
		f.Add(v[:len(v)/2])
		f.Add(childValue(k, v))
	}
	f.Add(appendChange(nil, rowRef{model.Receive, k}, ""))
	f.Add(appendChange(nil, rowRef{model.Mail, k}, "from-b"))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRowMeta(b)
		alias, aliasErr := decodeRowMetaAlias(b)
		split, tail, stateLen, splitErr := splitRowMeta(b)
		if (err == nil) != (aliasErr == nil) || (err == nil) != (splitErr == nil) {
			t.Fatalf("%x: decodeRowMeta says %v, decodeRowMetaAlias %v, splitRowMeta %v", b, err, aliasErr, splitErr)
		}
		if err == nil {
			again, err := decodeRowMeta(m.encode())
			if err != nil {
				t.Fatalf("%x: the re-encoded meta does not decode: %v", b, err)
			}
			if !sameMeta(again, m) {
				t.Fatalf("%x: decoded %+v, re-encoded and decoded %+v", b, m, again)
			}
			if !sameMeta(alias, m) {
				t.Fatalf("%x: decodeRowMeta %+v, decodeRowMetaAlias %+v", b, m, alias)
			}
			if split.RowNo != m.RowNo || split.Size != m.Size || split.Stamp != m.Stamp {
				t.Fatalf("%x: splitRowMeta's numbers %+v, decodeRowMeta's %+v", b, split, m)
			}
			st, rest, err := model.DecodeState(tail[:stateLen])
			if err != nil || len(rest) != 0 || !st.Equal(m.State) {
				t.Fatalf("%x: splitRowMeta's state %x decodes to %v (rest %x, %v), decodeRowMeta's %v", b, tail[:stateLen], st, rest, err, m.State)
			}
			if !bytes.Equal(tail[stateLen:], m.Inline) {
				t.Fatalf("%x: splitRowMeta's inline content %q, decodeRowMeta's %q", b, tail[stateLen:], m.Inline)
			}
		}

		if ck, cm, err := decodeChildValue(b); err == nil {
			if !bytes.Equal(ck[:], b[:model.KeySize]) {
				t.Fatalf("%x: child entry's key %s", b, ck)
			}
			if again, err := decodeRowMeta(b[model.KeySize:]); err != nil || !sameMeta(again, cm) {
				t.Fatalf("%x: child entry's meta %+v, its tail decodes to %+v (%v)", b, cm, again, err)
			}
		}

		if ref, origin, err := decodeChange(b); err == nil {
			if again := appendChange(nil, ref, origin); !bytes.Equal(again, b) {
				t.Fatalf("change entry %x decodes to %v %q, which encodes to %x", b, ref, origin, again)
			}
		}
	})
}

// sameMeta reports whether two decoded metas hold the same row.
func sameMeta(a, b rowMeta) bool {
	return a.RowNo == b.RowNo && a.Size == b.Size && a.Stamp == b.Stamp && a.State.Equal(b.State) &&
		bytes.Equal(a.Inline, b.Inline) && (a.Inline == nil) == (b.Inline == nil)
}
