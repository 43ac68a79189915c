package model

import "testing"

func TestReason(t *testing.T) {
	rk := KeyOf(Receive, []byte("r"))
	c := ReasonContent(rk, Reject, 0.9991, "classifier 0.9991 (viagra)\nsecond line")
	if r, ok := ParseReason(c); !ok || r != "classifier 0.9991 (viagra) second line" {
		t.Fatalf("ParseReason = %q, %v", r, ok)
	}
	if _, ok := ParseReason([]byte("other")); ok {
		t.Fatal("ParseReason accepted a non-reason row")
	}
	var st State
	old, cur := KeyOf(Text, []byte("old")), KeyOf(Text, c)
	st.Set(ReasonColumn(old), 10)
	st.Set(ReasonColumn(cur), 20)
	if k, ok := LatestReason(st); !ok || k != cur {
		t.Fatalf("LatestReason = %s, %v; want the newer link", k, ok)
	}
	if len(ReasonColumn(cur)) > 64 {
		t.Fatal("reason column name too long")
	}
}
