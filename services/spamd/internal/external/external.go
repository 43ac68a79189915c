package external

import (
	"errors"
	"fmt"
	"time"
)

// Result is one engine's opinion of one mail.
type Result struct {
	// Score is the engine's score; higher is spammier.
	Score float64
	// Threshold is the score from which the engine calls a mail spam
	// (SpamAssassin's required_score, rspamd's reject score).
	Threshold float64
	// Spam is the engine's own verdict.
	Spam bool
	// Engine names the engine: "spamassassin" or "rspamd".
	Engine string
	// Rules are the rules (SpamAssassin) or symbols (rspamd) that fired,
	// for the rejection digest's "why". Possibly empty.
	Rules []string
}

// Sentinel errors; test them with errors.Is.
var (
	// ErrTooLarge means the mail is larger than MaxBytes and was not sent.
	ErrTooLarge = errors.New("external: mail too large for engine")
	// ErrMalformed means the engine's answer could not be read as a
	// verdict.
	ErrMalformed = errors.New("external: malformed answer")
	// ErrSkipped means the engine answered but declined to judge.
	ErrSkipped = errors.New("external: engine skipped the mail")
)

// Limits shared by both engines. A zero field means its default.
type Limits struct {
	// Timeout bounds one check, connect to last byte. Default 10s.
	Timeout time.Duration
	// MaxBytes is the largest mail sent to the engine. Default 512 KiB.
	MaxBytes int
	// MaxResponseBytes bounds the answer read. Default 64 KiB.
	MaxResponseBytes int
}

const (
	defaultTimeout          = 10 * time.Second
	defaultMaxBytes         = 512 << 10
	defaultMaxResponseBytes = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.Timeout == 0 {
		l.Timeout = defaultTimeout
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = defaultMaxBytes
	}
	if l.MaxResponseBytes == 0 {
		l.MaxResponseBytes = defaultMaxResponseBytes
	}
	return l
}

func (l Limits) validate() []error {
	var errs []error
	if l.Timeout < 0 {
		errs = append(errs, fmt.Errorf("external: timeout %v is negative", l.Timeout))
	}
	if l.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("external: max bytes %d is negative", l.MaxBytes))
	}
	if l.MaxResponseBytes < 0 {
		errs = append(errs, fmt.Errorf("external: max response bytes %d is negative", l.MaxResponseBytes))
	}
	return errs
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
