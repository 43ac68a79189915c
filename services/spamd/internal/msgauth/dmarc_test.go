package msgauth

import (
	"testing"

	"github.com/emersion/go-msgauth/dmarc"

	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

func TestEvaluateDMARC(t *testing.T) {
	pct := func(n int) *int { return &n }
	reject := &dmarc.Record{Policy: dmarc.PolicyReject, DKIMAlignment: dmarc.AlignmentRelaxed, SPFAlignment: dmarc.AlignmentRelaxed}
	strict := &dmarc.Record{Policy: dmarc.PolicyReject, DKIMAlignment: dmarc.AlignmentStrict, SPFAlignment: dmarc.AlignmentStrict}
	sp := &dmarc.Record{Policy: dmarc.PolicyNone, SubdomainPolicy: dmarc.PolicyReject, DKIMAlignment: dmarc.AlignmentRelaxed, SPFAlignment: dmarc.AlignmentRelaxed}
	half := &dmarc.Record{Policy: dmarc.PolicyReject, Percent: pct(50), DKIMAlignment: dmarc.AlignmentRelaxed, SPFAlignment: dmarc.AlignmentRelaxed}
	tests := []struct {
		name       string
		rec        *dmarc.Record
		atOrg      bool
		in         dmarcInput
		want       signal.AuthResult
		wantReject bool
	}{
		{"dkim exact", reject, false, dmarcInput{fromDomain: "a.example", dkimPass: []string{"a.example"}}, signal.Pass, false},
		{"dkim relaxed parent", reject, false, dmarcInput{fromDomain: "news.a.example", dkimPass: []string{"a.example"}}, signal.Pass, false},
		{"dkim relaxed co.uk org", reject, false, dmarcInput{fromDomain: "x.shop.co.uk", dkimPass: []string{"mail.shop.co.uk"}}, signal.Pass, false},
		{"dkim public suffix siblings do not align", reject, false, dmarcInput{fromDomain: "one.co.uk", dkimPass: []string{"two.co.uk"}}, signal.Fail, true},
		{"dkim strict parent fails", strict, false, dmarcInput{fromDomain: "news.a.example", dkimPass: []string{"a.example"}}, signal.Fail, true},
		{"spf relaxed", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.Pass, spfDomain: "bounce.a.example"}, signal.Pass, false},
		{"spf softfail aligned is no pass", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.SoftFail, spfDomain: "a.example"}, signal.Fail, true},
		{"spf pass unaligned", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.Pass, spfDomain: "b.example"}, signal.Fail, true},
		{"spf temperror aligned", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.TempError, spfDomain: "a.example"}, signal.TempError, false},
		{"spf temperror unaligned", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.TempError, spfDomain: "b.example"}, signal.Fail, true},
		{"dkim temperror aligned", reject, false, dmarcInput{fromDomain: "a.example", dkimTemp: []string{"a.example"}}, signal.TempError, false},
		{"dkim temperror third party", reject, false, dmarcInput{fromDomain: "a.example", dkimTemp: []string{"esp.example"}}, signal.Fail, true},
		{"pass beats temperror", reject, false, dmarcInput{fromDomain: "a.example", spf: signal.TempError, spfDomain: "a.example", dkimPass: []string{"a.example"}}, signal.Pass, false},
		{"sp applies at org", sp, true, dmarcInput{fromDomain: "sub.a.example"}, signal.Fail, true},
		{"p applies at own record", sp, false, dmarcInput{fromDomain: "a.example"}, signal.Fail, false},
		{"pct 50 no reject", half, false, dmarcInput{fromDomain: "a.example"}, signal.Fail, false},
		{"quarantine rejects", &dmarc.Record{Policy: dmarc.PolicyQuarantine}, false, dmarcInput{fromDomain: "a.example"}, signal.Fail, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rej := evaluateDMARC(tt.rec, tt.atOrg, tt.in)
			if got != tt.want || rej != tt.wantReject {
				t.Errorf("evaluateDMARC(%+v) = %s, reject %v; want %s, reject %v", tt.in, got, rej, tt.want, tt.wantReject)
			}
		})
	}
}

func TestFromHeaderDomain(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		wantRes  signal.AuthResult
	}{
		{"plain", "From: a@Example.COM\r\n\r\n", "example.com", signal.None},
		{"display name", "From: \"Alice, A.\" <alice@a.example>\r\n\r\n", "a.example", signal.None},
		{"folded", "Subject: x\r\nFrom: Alice\r\n <alice@a.example>\r\n\r\n", "a.example", signal.None},
		{"encoded word", "From: =?utf-8?q?J=C3=B6rg?= <j@a.example>\r\n\r\n", "a.example", signal.None},
		{"encoded word in windows-1252", "From: =?windows-1252?Q?J=F6rg?= <j@a.example>\r\n\r\n", "a.example", signal.None},
		{"encoded word in an unknown charset", "From: =?x-unknown?b?////?= <j@a.example>\r\n\r\n", "a.example", signal.None},
		{"comment in windows-1252", "From: j@a.example (=?windows-1252?Q?J=F6rg?=)\r\n\r\n", "a.example", signal.None},
		{"two authors same domain", "From: a@a.example, b@a.example\r\n\r\n", "a.example", signal.None},
		{"two authors two domains", "From: a@a.example, b@b.example\r\n\r\n", "", signal.PermError},
		{"two fields", "From: a@a.example\r\nfrom: a@a.example\r\n\r\n", "", signal.PermError},
		{"missing", "Subject: x\r\n\r\n", "", signal.None},
		{"garbage", "From: <<<@@@>>>\r\n\r\n", "", signal.None},
		{"single label", "From: root@localhost\r\n\r\n", "", signal.None},
		{"bad line before the end", "From: a@a.example\r\nno colon here\r\n\r\n", "a.example", signal.None},
		{"from after a bad line", "no colon here\r\nFrom: a@a.example\r\n\r\n", "a.example", signal.None},
		{"from after a bad field name", "Subject\t: x\r\nFrom: a@a.example\r\n\r\n", "a.example", signal.None},
		{"space before colon", "From : a@a.example\r\n\r\n", "a.example", signal.None},
		{"second from with space before colon", "From: a@a.example\r\nFROM\t: b@b.example\r\n\r\n", "", signal.PermError},
		{"second from after a bad line", "From: a@a.example\r\nno colon\r\nFrom: b@b.example\r\n\r\n", "", signal.PermError},
		{"from in the body", "Subject: x\r\n\r\nFrom: b@b.example\r\n", "", signal.None},
		{"fold inside the address", "From: Alice <alice@\r\n a.example>\r\n\r\n", "a.example", signal.None},
		{"leading fold belongs to no field", " x\r\nFrom: a@a.example\r\n\r\n", "a.example", signal.None},
		{"u-label domain", "From: j@Bücher.example\r\n\r\n", "xn--bcher-kva.example", signal.None},
		{"u-label and a-label are one domain", "From: a@bücher.example, b@xn--bcher-kva.example\r\n\r\n", "xn--bcher-kva.example", signal.None},
		{"empty", "", "", signal.None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, _ := fromHeaderDomain(canonicalLines([]byte(tt.in)))
			if got != tt.want || res != tt.wantRes {
				t.Errorf("fromHeaderDomain(%q) = %q, %s; want %q, %s", tt.in, got, res, tt.want, tt.wantRes)
			}
		})
	}
}

func TestCanonicalLines(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"crlf kept", "A: b\r\n\r\nx\r\n", "A: b\r\n\r\nx\r\n"},
		{"lf to crlf", "A: b\n\nx\ny\n", "A: b\r\n\r\nx\r\ny\r\n"},
		{"mixed", "A: b\r\n\nx\n", "A: b\r\n\r\nx\r\n"},
		{"bare cr kept", "A: b\r\n\r\nx\ry\r\n", "A: b\r\n\r\nx\ry\r\n"},
		{"header only gets empty body", "A: b", "A: b\r\n\r\n"},
		{"header only with eol", "A: b\n", "A: b\r\n\r\n"},
		{"empty", "", "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(canonicalLines([]byte(tt.in))); got != tt.want {
				t.Errorf("canonicalLines(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidDomain(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"example.com", true},
		{"_spf.example.com", true},
		{"localhost", false},
		{"a..b", false},
		{"[192.0.2.1]", false},
		{"192.0.2.1", true}, // syntactically a name; SPF then finds no record
		{"ex ample.com", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validDomain(tt.in); got != tt.want {
			t.Errorf("validDomain(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIsDMARC1(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"v=DMARC1; p=reject", true},
		{"v=DMARC1", true},
		{"v = DMARC1 ;p=none", true},
		{"v=DMARC1;p=none", true},
		{"v=dmarc1; p=reject", false}, // the version is case-sensitive
		{" v=DMARC1; p=reject", false},
		{"p=reject; v=DMARC1", false},
		{"v=DMARC1 p=reject", false},
		{"v=spf1 -all", false},
		{"site-verification=abc", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isDMARC1(tt.in); got != tt.want {
			t.Errorf("isDMARC1(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestASCIIDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Example.COM.", "example.com"},
		{" a.example ", "a.example"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"bücher\u3002example", "xn--bcher-kva.example"},
		{"_dmarc.bücher.example", "_dmarc.xn--bcher-kva.example"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := asciiDomain(tt.in); got != tt.want {
			t.Errorf("asciiDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if !AlignedRelaxed("xn--bcher-kva.example", "news.bücher.example") || !AlignedRelaxed("mail.bücher.example", "xn--bcher-kva.example") {
		t.Errorf("AlignedRelaxed: a U-label and its A-label do not align")
	}
}
