package proctest

import (
	"slices"
	"testing"
)

// TestRuntimeEnv: the runtime settings come from the env files (dbd's
// GOGC=400, none for imapd), and a variable already set in the
// environment is left to it.
func TestRuntimeEnv(t *testing.T) {
	dbd := RuntimeEnv(t, "dbd")
	for _, want := range []string{"GOGC=400", "GODEBUG=schedtrace=2000000000"} {
		if !slices.Contains(dbd, want) {
			t.Errorf("dbd: %q, want %s in it", dbd, want)
		}
	}
	for _, v := range RuntimeEnv(t, "imapd") {
		if v != "GODEBUG=schedtrace=2000000000" {
			t.Errorf("imapd: %s, want only GODEBUG", v)
		}
	}
	t.Setenv("GOGC", "100")
	if got := RuntimeEnv(t, "dbd"); slices.Contains(got, "GOGC=400") {
		t.Errorf("dbd with GOGC=100 set: %q, want no GOGC", got)
	}
}
