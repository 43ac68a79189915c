package sender

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	long := strings.Repeat("a", MaxLen) + "@x.example"
	tests := []struct {
		name, in, want string
	}{
		{"null sender", "", ""},
		{"plain", "Alice@Orig.Example", "alice@orig.example"},
		{"no domain", "Postmaster", "postmaster"},
		{"empty local", "@orig.example", "@orig.example"},
		{"empty domain", "alice@", "alice@"},

		// BATV
		{"prvs", "prvs=1234abcdef=alice@orig.example", "alice@orig.example"},
		{"prvs upper case", "PRVS=0123ABCDEF=Alice@Orig.Example", "alice@orig.example"},
		{"msprvs1", "msprvs1=19827s9dJ8DGx=bounces-1234@ms.example", "bounces-#@ms.example"},
		{"btv1", "btv1==0678a1f3a1c==alice@orig.example", "alice@orig.example"},
		{"prvs without tag", "prvs==alice@orig.example", "prvs==alice@orig.example"},
		{"prvs without address", "prvs=1234abcdef=@orig.example", "prvs=1234abcdef=@orig.example"},
		{"prvs tag not alnum", "prvs=12.34=alice@orig.example", "prvs=12.34=alice@orig.example"},
		{"prvs alone", "prvs=alice@orig.example", "prvs=alice@orig.example"},
		{"not a prefix", "xprvs=1234abcdef=alice@orig.example", "xprvs=1234abcdef=alice@orig.example"},

		// VERP and bounce addresses
		{"mailman", "list-bounces+user=example.org@lists.example", "list-bounces+user=example.org@lists.example"},
		{"ezmlm", "list-return-1234-user=example.org@lists.example", "list-return-#-user=example.org@lists.example"},
		{"bulk", "bounce-123456-789@mail.example", "bounce-#-#@mail.example"},
		{"sendgrid-like", "bounces+1234567-abcd-user=example.org@em.example", "bounces+#-abcd-user=example.org@em.example"},
		{"digits inside a word stay", "bounce-mc.us5_12345.67890-user=example.org@mc.example", "bounce-mc.us5_12345.#-user=example.org@mc.example"},
		{"bounce word after plus is not VERP", "alice+bounce-12@orig.example", "alice@orig.example"},
		{"sub-address", "alice+news@orig.example", "alice@orig.example"},
		{"per-message sub-address", "alice+1234@orig.example", "alice@orig.example"},
		{"leading plus kept", "+1234@orig.example", "+1234@orig.example"},
		{"digits of a person stay", "john.smith1985@mail.example", "john.smith1985@mail.example"},
		{"numeric person stays", "123456789@qq.example", "123456789@qq.example"},
		{"bouncer is not bounce", "bouncer-12@orig.example", "bouncer-12@orig.example"},

		// SRS
		{"srs0", "SRS0=HHH1=TT=orig.example=alice@forwarder.example", "alice@orig.example"},
		{"srs0 plus separator", "srs0+HHH1=TT=orig.example=alice@forwarder.example", "alice@orig.example"},
		{"srs0 local with =", "SRS0=HHH1=TT=orig.example=a=b@forwarder.example", "a=b@orig.example"},
		{"srs1", "SRS1=XXXX=fwd1.example==HHH1=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
		{"srs1 minus separator", "SRS1=XXXX=fwd1.example=-HHH1=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
		{"srs of batv", "SRS0=HHH1=TT=orig.example=prvs=1234abcdef=alice@fwd.example", "alice@orig.example"},
		{"srs of verp", "SRS0=HHH1=TT=lists.example=bounce-42@fwd.example", "bounce-#@lists.example"},
		{"srs of srs", "SRS0=a=b=fwd.example=SRS0=HHH1=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
		{"srs0 malformed", "SRS0=HHH1=TT=alice@forwarder.example", "srs0@forwarder.example"},
		{"srs0 empty domain", "SRS0=HHH1=TT==alice@forwarder.example", "srs0@forwarder.example"},
		{"srs0 empty local", "SRS0=HHH1=TT=orig.example=@forwarder.example", "srs0@forwarder.example"},
		{"srs1 malformed", "SRS1=XXXX=fwd1.example=HHH1@fwd2.example", "srs1@fwd2.example"},
		{"srs prefix only", "srs0=@fwd.example", "srs0@fwd.example"},
		{"srs without separator", "srs0alice@fwd.example", "srs0alice@fwd.example"},
		{"srs2 is not srs", "SRS2=HHH1=TT=orig.example=alice@forwarder.example", "srs2=hhh1=tt=orig.example=alice@forwarder.example"},

		// Unicode (SMTPUTF8) and bounds
		{"unicode", "Prvs=1234abcdef=Jürgen@Bücher.Example", "jürgen@bücher.example"},
		{"unicode srs", "SRS0=HHH1=TT=bücher.example=jürgen@fwd.example", "jürgen@bücher.example"},
		{"unicode next to digits", "bounce-Grüße2-12@x.example", "bounce-grüße2-#@x.example"},
		{"invalid utf-8", "bounce-\xff-12@x.example", "bounce-\uFFFD-#@x.example"},
		{"very long", "prvs=1234abcdef=" + long, "prvs=1234abcdef=" + long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Normalize(tt.in); got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestNormalizeLongest: the longest address reduced is reduced in one
// pass over a chain of tags, not in quadratic time (the test's own time
// limit is the check).
func TestNormalizeLongest(t *testing.T) {
	in := strings.Repeat("prvs=1a=", (MaxLen-20)/8) + "alice@x.example"
	if got := Normalize(in); got != "alice@x.example" {
		t.Errorf("Normalize(chain of %d bytes) = %q", len(in), got)
	}
}

// FuzzNormalize: Normalize is idempotent, keeps the null sender alone,
// never makes a longer or an empty key, keeps valid UTF-8 valid, and keeps
// the domain of any address that is not SRS.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"", "alice@orig.example", "prvs=1234abcdef=alice@orig.example", "btv1==0678a1f3a1c==a@b",
		"msprvs1=x=y@z", "list-bounces+user=example.org@lists.example", "bounce-123456-789@mail.example",
		"SRS0=HHH1=TT=orig.example=alice@forwarder.example", "SRS1=XXXX=fwd1.example==HHH1=TT=orig.example=alice@fwd2.example",
		"srs0=@x", "prvs=ab+c=d@e", "\"a@b\"@c", "jürgen@bücher.example", "+@", "@", "a+b+c@d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := Normalize(in)
		if again := Normalize(got); again != got {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q", in, got, got, again)
		}
		if (in == "") != (got == "") {
			t.Fatalf("Normalize(%q) = %q: only the null sender is empty", in, got)
		}
		lower := strings.ToLower(in)
		if len(got) > len(lower) {
			t.Fatalf("Normalize(%q) = %q, longer than the address", in, got)
		}
		if utf8.ValidString(in) && !utf8.ValidString(got) {
			t.Fatalf("Normalize(%q) = %q, not UTF-8", in, got)
		}
		if strings.Contains(lower, "srs") || len(lower) > MaxLen {
			return
		}
		if at := strings.LastIndexByte(lower, '@'); at >= 0 && !strings.HasSuffix(got, lower[at:]) {
			t.Fatalf("Normalize(%q) = %q changed the domain", in, got)
		}
	})
}
