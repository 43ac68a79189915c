package decide

import (
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

func TestDecideContent(t *testing.T) {
	dmarcReject := &signal.Auth{DMARC: signal.Fail, DMARCReject: true, FromDomain: "bank.example"}
	dmarcTemp := &signal.Auth{DMARC: signal.TempError, DMARCReject: true, FromDomain: "bank.example"}
	aligned := &signal.Auth{DKIM: signal.Pass, DKIMDomains: []string{"mail.example.org"}, FromDomain: "example.org"}
	spfOther := &signal.Auth{SPF: signal.Pass, SPFDomain: "other.example", FromDomain: "example.org"}
	tld := &signal.Auth{DKIM: signal.Pass, DKIMDomains: []string{"org"}, FromDomain: "example.org"}
	saSpam := &External{Engine: "spamassassin", Score: 7, Threshold: 5}
	saHam := &External{Engine: "spamassassin", Score: 1, Threshold: 5}
	tests := []struct {
		name       string
		p          float64
		in         Input
		want       model.Verdict
		wantReason string
	}{
		{"dmarc reject, not clearly ham", 0.5, Input{Auth: dmarcReject}, model.Reject, "DMARC fail"},
		{"dmarc reject but clearly ham", 0.1, Input{Auth: dmarcReject}, model.Accept, ""},
		{"dmarc temperror never rejects", 0.5, Input{Auth: dmarcTemp}, model.Accept, ""},
		{"dmarc temperror, spam content rejects on content", 0.999, Input{Auth: dmarcTemp}, model.Reject, "classifier"},
		{"sure spam", RejectAt, Input{}, model.Reject, "classifier 0.99"},
		{"sure spam, first contact", 0.999, Input{Grey: GreyFirst}, model.Retry, "greylisted"},
		{"sure spam, retried", 0.999, Input{Grey: GreyPassed}, model.Reject, "classifier"},
		{"just below sure", RejectAt - 0.001, Input{}, model.Accept, ""},
		{"external spam lowers the bar", ExternalRejectAt, Input{External: saSpam}, model.Reject, "spamassassin 7.0/5.0"},
		{"external spam alone never rejects", 0.5, Input{External: saSpam}, model.Accept, ""},
		{"external ham keeps the bar", ExternalRejectAt, Input{External: saHam}, model.Accept, ""},
		{"aligned auth, clearly ham", 0.1, Input{Auth: aligned, Grey: GreyFirst}, model.Accept, "authenticated"},
		{"aligned auth, leaning ham, first contact", 0.4, Input{Auth: aligned, Grey: GreyFirst}, model.Accept, ""},
		{"aligned auth, unsure, first contact", 0.7, Input{Auth: aligned, Grey: GreyFirst}, model.Retry, "greylisted"},
		{"unaligned spf, leaning ham, first contact", 0.4, Input{Auth: spfOther, Grey: GreyFirst}, model.Retry, "greylisted"},
		{"bare tld never aligns", 0.4, Input{Auth: tld, Grey: GreyFirst}, model.Retry, "greylisted"},
		{"clearly ham, first contact", 0.05, Input{Grey: GreyFirst}, model.Accept, ""},
		{"unsure, first contact", 0.6, Input{Grey: GreyFirst}, model.Retry, "greylisted"},
		{"unsure, greylisting off", 0.9, Input{}, model.Accept, ""},
		{"unsure, greylisting passed", 0.9, Input{Grey: GreyPassed}, model.Accept, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decideContent(classify.Result{Prob: tt.p}, tt.in)
			if got.Verdict != tt.want || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("decideContent(p=%v, %+v) = %v %q, want %v with %q", tt.p, tt.in, got.Verdict, got.Reason, tt.want, tt.wantReason)
			}
			if strings.Contains(got.Reason, "\n") {
				t.Errorf("reason %q is not one line", got.Reason)
			}
		})
	}
}

// spammy is a model that finds the test mail sure spam, so the list and
// known-sender rules are shown to win over content.
func spammy(t *testing.T) (*classify.Model, []byte) {
	t.Helper()
	var docs []classify.Doc
	for range 30 {
		docs = append(docs,
			classify.Doc{Tokens: classify.Tokens([]byte("Subject: cheap pills\n\nbuy cheap pills now click here")), Class: classify.Spam},
			classify.Doc{Tokens: classify.Tokens([]byte("Subject: meeting notes\n\nthe agenda for the meeting is attached")), Class: classify.Ham})
	}
	raw := []byte("Subject: cheap pills\n\nbuy cheap pills now click here")
	m := classify.Train(docs)
	if p := m.Score(raw).Prob; p < RejectAt {
		t.Fatalf("test model scores the spam %v, want >= %v", p, RejectAt)
	}
	return m, raw
}

func TestDecide(t *testing.T) {
	m, raw := spammy(t)
	tests := []struct {
		name string
		m    *classify.Model
		in   Input
		want model.Verdict
	}{
		{"block list", m, Input{Raw: raw, List: ListBlock, ListWhat: "sender x@y"}, model.Reject},
		{"block list beats known", m, Input{Raw: raw, List: ListBlock, Known: true}, model.Reject},
		{"allow list beats spam content", m, Input{Raw: raw, List: ListAllow}, model.Accept},
		{"known beats spam content", m, Input{Raw: raw, Known: true}, model.Accept},
		{"known beats dmarc reject", m, Input{Raw: raw, Known: true, Auth: &signal.Auth{DMARC: signal.Fail, DMARCReject: true}}, model.Accept},
		{"spam content", m, Input{Raw: raw}, model.Reject},
		{"no model never rejects on content", nil, Input{Raw: raw}, model.Accept},
		{"malformed mail", m, Input{Raw: []byte("\x00\xff<<<--\n\n=?=?")}, model.Accept},
		{"policy accept beats spam content", m, Input{Raw: raw, Policy: model.PolicyAccept}, model.Accept},
		{"policy accept beats greylisting", m, Input{Raw: raw, Policy: model.PolicyAccept, Grey: GreyFirst}, model.Accept},
		{"policy accept beats dmarc reject", m, Input{Raw: raw, Policy: model.PolicyAccept, Auth: &signal.Auth{DMARC: signal.Fail, DMARCReject: true}}, model.Accept},
		{"block list beats policy accept", m, Input{Raw: raw, Policy: model.PolicyAccept, List: ListBlock}, model.Reject},
		{"spam, first contact, greylisted", m, Input{Raw: raw, Grey: GreyFirst}, model.Retry},
		{"policy nogreylist: sure spam rejected at once", m, Input{Raw: raw, Policy: model.PolicyNoGreylist, Grey: GreyFirst}, model.Reject},
		{"policy nogreylist: unsure first contact accepted", nil, Input{Raw: raw, Policy: model.PolicyNoGreylist, Grey: GreyFirst}, model.Accept},
		{"unsure first contact greylisted", nil, Input{Raw: raw, Grey: GreyFirst}, model.Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.m, tt.in)
			if got.Verdict != tt.want {
				t.Errorf("Decide(%q) = %v (%s), want %v", tt.name, got.Verdict, got.Reason, tt.want)
			}
		})
	}
	if d := Decide(m, Input{List: ListAllow, ListWhat: "sender x@y"}); d.Reason != "allow list: sender x@y" || d.Score != ScoreAllow {
		t.Errorf("allow list decision = %+v", d)
	}
	// The check still runs for an accept-all mailbox: its score and what
	// it would have said are recorded.
	d := Decide(m, Input{Raw: raw, Policy: model.PolicyAccept})
	if d.Score < RejectAt || !strings.HasPrefix(d.Reason, "mailbox policy accept (would be reject: classifier") {
		t.Errorf("policy accept decision = %+v", d)
	}
}

// TestDecideRejectsOnlyWhenSure runs decideContent over every combination
// of the signals it reads and checks the policy of the package doc: a
// reject needs a definite DMARC fail with a reject policy on mail that is
// not clearly ham, or content the classifier is sure of (lower bar only
// when an engine agrees) on a sender that is not a first contact. A DNS
// problem (TempError), an engine alone or authentication alone never
// rejects.
func TestDecideRejectsOnlyWhenSure(t *testing.T) {
	var auths []*signal.Auth
	auths = append(auths, nil)
	results := []signal.AuthResult{signal.None, signal.Pass, signal.Fail, signal.SoftFail, signal.Neutral, signal.TempError, signal.PermError}
	for _, dmarc := range results {
		for _, rejectFlag := range []bool{false, true} {
			for _, dkim := range []signal.AuthResult{signal.None, signal.Pass, signal.TempError} {
				auths = append(auths, &signal.Auth{DMARC: dmarc, DMARCReject: rejectFlag, DKIM: dkim,
					DKIMDomains: []string{"example.org"}, SPF: signal.Pass, SPFDomain: "example.org", FromDomain: "example.org"})
			}
		}
	}
	externals := []*External{nil, {Engine: "rspamd", Score: 20, Threshold: 15}, {Engine: "spamassassin", Score: 0, Threshold: 5}}
	probs := []float64{0, 0.1, ClearHam - 1e-9, ClearHam, 0.4, LeanHam, 0.7, ExternalRejectAt - 1e-9, ExternalRejectAt, RejectAt - 1e-9, RejectAt, 1}
	n := 0
	for _, a := range auths {
		for _, ext := range externals {
			for _, grey := range []Grey{GreyOff, GreyFirst, GreyPassed} {
				for _, p := range probs {
					in := Input{Auth: a, External: ext, Grey: grey}
					got := decideContent(classify.Result{Prob: p}, in)
					n++
					dmarcSure := a != nil && a.DMARC == signal.Fail && a.DMARCReject && p >= ClearHam
					bar := RejectAt
					if ext.spam() {
						bar = ExternalRejectAt
					}
					contentSure := p >= bar && grey != GreyFirst
					if got.Verdict == model.Reject && !dmarcSure && !contentSure {
						t.Errorf("decideContent(p=%v, auth=%+v, ext=%+v, grey=%v) = reject (%s), but no signal is sure", p, a, ext, grey, got.Reason)
					}
					if got.Verdict != model.Reject && (dmarcSure || contentSure) {
						t.Errorf("decideContent(p=%v, auth=%+v, ext=%+v, grey=%v) = %v (%s), want reject", p, a, ext, grey, got.Verdict, got.Reason)
					}
					if got.Verdict == model.Retry && grey != GreyFirst {
						t.Errorf("decideContent(p=%v, auth=%+v, ext=%+v, grey=%v) = retry, but this is no first contact", p, a, ext, grey)
					}
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d combinations", n)
	}
}
