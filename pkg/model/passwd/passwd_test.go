package passwd

import (
	"errors"
	"strings"
	"testing"
)

var fast = Params{MemoryKiB: 64, Time: 1, Threads: 1}

func TestHashCheck(t *testing.T) {
	h, err := Hash("correct horse", fast)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	if ok, err := Check("correct horse", h); !ok || err != nil {
		t.Fatalf("Check(right) = %v, %v", ok, err)
	}
	if ok, err := Check("correct horsE", h); ok || err != nil {
		t.Fatalf("Check(wrong) = %v, %v", ok, err)
	}
	h2, _ := Hash("correct horse", fast)
	if h2 == h {
		t.Fatal("two hashes of one password are equal: no fresh salt")
	}
}

func TestCheckMalformed(t *testing.T) {
	for _, s := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5"} {
		if ok, err := Check("x", s); ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%q) = %v, %v; want ErrMalformed", s, ok, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	h, _ := Hash("pw", fast)
	f.Add("pw", h)
	f.Add("x", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5")
	f.Fuzz(func(t *testing.T, pw, stored string) {
		ok, err := Check(pw, stored)
		if ok && err != nil {
			t.Fatalf("Check = true with error %v", err)
		}
	})
}
