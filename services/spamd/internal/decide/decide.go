package decide

import (
	"fmt"
	"strings"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/signal"
)

// Thresholds on the classifier's spam probability. They are fixed here,
// not tuned per user or per evaluation fold: the k-fold figures in
// docs/spamd.md are measured with exactly these values.
const (
	// RejectAt is the probability at and above which content alone rejects.
	// Fisher combining pushes clear spam to 0.999+ while a mail with mixed
	// evidence lands near 0.5, so a threshold this high rejects only where
	// the spam evidence is overwhelming and the ham evidence is nil.
	RejectAt = 0.99
	// ExternalRejectAt is RejectAt when an external engine also says spam:
	// two independent judges that agree may reject a little earlier.
	ExternalRejectAt = 0.95
	// ClearHam is the probability below which content counts as clearly
	// ham: it vetoes a DMARC-reject and lets authenticated mail skip
	// greylisting.
	ClearHam = 0.2
	// LeanHam is the probability below which authenticated first contact
	// is not greylisted.
	LeanHam = 0.5
)

// Fixed scores for decisions that did not come from the classifier, so a
// digest can sort by Score without the classifier having run.
const (
	ScoreBlock = 1.0
	ScoreAllow = 0.0
	ScoreKnown = 0.0
)

// ListMatch is what the per-mailbox lists or an operator rule said of the
// sender.
type ListMatch uint8

// List outcomes.
const (
	ListNone ListMatch = iota
	ListAllow
	ListBlock
)

// Grey is the greylisting state of this delivery attempt.
type Grey uint8

// Greylisting states.
const (
	// GreyOff: greylisting does not apply (eval, or the sender is past it).
	GreyOff Grey = iota
	// GreyFirst: first contact, not retried yet.
	GreyFirst
	// GreyPassed: the sender came back after the greylisting delay.
	GreyPassed
)

// External is an external engine's verdict (rspamd, SpamAssassin).
type External struct {
	Engine    string  // "spamassassin", "rspamd"
	Score     float64 // the engine's score
	Threshold float64 // the engine's spam threshold (SpamAssassin's required_score)
}

// spam reports whether the engine classed the mail as spam.
func (e *External) spam() bool { return e != nil && e.Score >= e.Threshold }

// Input is everything spamd knows about one mail for one mailbox.
type Input struct {
	Raw      []byte          // whole mail as stored (header + body; LF or CRLF)
	Env      signal.Envelope // zero in eval
	List     ListMatch       // per-mailbox allow/block list or operator rule hit
	ListWhat string          // what matched, for the reason ("sender x@y"); optional
	Known    bool            // this mailbox already accepted mail from this sender
	Auth     *signal.Auth    // nil: not checked (eval)
	Grey     Grey
	External *External // nil if none
	// Policy is the mailbox's spam policy (model.PolicyFilter in eval).
	Policy model.Policy
}

// Decision is the verdict with its score and a one-line reason for the
// mailbox owner's rejection digest.
type Decision struct {
	Verdict model.Verdict
	Score   float64
	Reason  string
}

// Decide applies the policy (see the package doc) to one mail. m may be nil
// (no model yet): content is then unsure and never rejects. Decide is safe
// for concurrent use if m is.
func Decide(m *classify.Model, in Input) Decision {
	switch in.List {
	case ListBlock:
		return Decision{Verdict: model.Reject, Score: ScoreBlock, Reason: listReason("block list", in.ListWhat)}
	case ListAllow:
		return Decision{Verdict: model.Accept, Score: ScoreAllow, Reason: listReason("allow list", in.ListWhat)}
	}
	if in.Known {
		return Decision{Verdict: model.Accept, Score: ScoreKnown, Reason: "known correspondent"}
	}
	if in.Policy == model.PolicyNoGreylist && in.Grey == GreyFirst {
		in.Grey = GreyOff
	}
	res := classify.Result{Prob: 0.5}
	if m != nil {
		res = m.Score(in.Raw)
	}
	d := decideContent(res, in)
	if in.Policy == model.PolicyAccept && d.Verdict != model.Accept {
		// The check still ran, so the operator can see what it would
		// have said; only the mailbox's own block list (above) rejects.
		d = Decision{Verdict: model.Accept, Score: d.Score,
			Reason: fmt.Sprintf("mailbox policy accept (would be %s: %s)", d.Verdict, d.Reason)}
	}
	return d
}

// decideContent is the part of the policy after lists and known senders,
// given the classifier's result: a pure function so every branch has a
// table test.
func decideContent(res classify.Result, in Input) Decision {
	p := res.Prob
	content := "classifier " + res.Reason()
	a := in.Auth
	// DMARC fail where the domain asks for reject. Only Fail counts:
	// TempError (a DNS outage) never leads to reject.
	if a != nil && a.DMARC == signal.Fail && a.DMARCReject && p >= ClearHam {
		return Decision{Verdict: model.Reject, Score: max(p, RejectAt),
			Reason: fmt.Sprintf("DMARC fail, %s asks to reject; %s", orUnknown(a.FromDomain), content)}
	}
	rejectAt := RejectAt
	if in.External.spam() {
		rejectAt = ExternalRejectAt
		content += fmt.Sprintf("; %s %.1f/%.1f", in.External.Engine, in.External.Score, in.External.Threshold)
	}
	if p >= rejectAt {
		if in.Grey == GreyFirst {
			// Greylisting gives a first contact a chance: most spam robots
			// never retry, and a real sender that does comes back as
			// GreyPassed and is judged again.
			return Decision{Verdict: model.Retry, Score: p, Reason: "greylisted first contact; " + content}
		}
		return Decision{Verdict: model.Reject, Score: p, Reason: content}
	}
	aligned := a != nil && authAligned(a)
	if aligned && p < ClearHam {
		return Decision{Verdict: model.Accept, Score: p, Reason: "authenticated sender; " + content}
	}
	good := p < ClearHam || aligned && p < LeanHam
	if in.Grey == GreyFirst && !good {
		return Decision{Verdict: model.Retry, Score: p, Reason: "greylisted first contact; " + content}
	}
	return Decision{Verdict: model.Accept, Score: p, Reason: content}
}

// authAligned reports an authentication pass for the From domain: DMARC
// pass, or a verified DKIM signature or SPF pass for a domain aligned with
// From in the relaxed sense of RFC 7489 §3.1 (same domain or a
// subdomain either way; the organizational-domain lookup is msgauth's job
// and shows up as DMARC pass).
func authAligned(a *signal.Auth) bool {
	if a.DMARC == signal.Pass {
		return true
	}
	if a.FromDomain == "" {
		return false
	}
	if a.DKIM == signal.Pass {
		for _, d := range a.DKIMDomains {
			if relaxedAligned(d, a.FromDomain) {
				return true
			}
		}
	}
	return a.SPF == signal.Pass && relaxedAligned(a.SPFDomain, a.FromDomain)
}

func relaxedAligned(d, from string) bool {
	d, from = strings.ToLower(strings.TrimSuffix(d, ".")), strings.ToLower(strings.TrimSuffix(from, "."))
	// A bare TLD ("com") never aligns: nobody outside the registry can
	// sign for it, and accepting it would align everything beneath it.
	if !strings.Contains(d, ".") || !strings.Contains(from, ".") {
		return false
	}
	return d == from || strings.HasSuffix(d, "."+from) || strings.HasSuffix(from, "."+d)
}

func listReason(list, what string) string {
	if what == "" {
		return list
	}
	return list + ": " + what
}

func orUnknown(s string) string {
	if s == "" {
		return "the From domain"
	}
	return s
}
