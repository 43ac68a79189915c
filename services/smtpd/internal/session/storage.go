package session

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/twinmx/twinmx/pkg/wire"
)

// DefaultNoSpaceHold is how long MAIL is refused after dbd last said its
// disk is full (Config.NoSpaceHold).
const DefaultNoSpaceHold = 5 * time.Second

// errNoSpace is the reply when dbd's disk is full: RFC 3463 §3.4 X.3.1
// "mail system full", with 452 as RFC 5321 §4.2.2 has it ("insufficient
// system storage"). Postfix answers the same when its queue file system
// is full.
var errNoSpace = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")

// dbReply maps a failed dbd request to the reply. It is the only place
// that does: dbd's disk is full (wire.ErrNoSpace) → 452 4.3.1, and
// dbd remembers nothing that request wrote; anything else → fallback (451
// 4.3.0, "temporary failure"). The caller logs err; peers never see it.
func (s *Session) dbReply(err error, fallback *smtp.SMTPError) *smtp.SMTPError {
	if errors.Is(err, wire.ErrNoSpace) {
		s.b.full.seen(s.b.cfg.Now())
		s.b.cfg.Metrics.Rejections.WithLabelValues("no-space").Inc()
		return errNoSpace
	}
	return fallback
}

// fullMark remembers that dbd answered no-space, so that MAIL can be
// refused at once (452 4.3.1) instead of after the sender has sent its
// whole message, which dbd would refuse. dbd keeps refusing writes until
// it restarts with free space (docs/dbd.md, Disk faults), so a recent
// no-space is a good guess for the next mail; the mark lasts hold and is
// renewed by every no-space, so while the disk stays full one mail per
// hold still reaches dbd and finds out. A successful write clears it.
// The zero value never refuses. Safe for concurrent use.
type fullMark struct {
	hold  time.Duration // <= 0: MAIL is never refused
	until atomic.Int64  // Unix nanoseconds; MAIL is refused before it
}

func (f *fullMark) seen(now time.Time) {
	if f.hold > 0 {
		f.until.Store(now.Add(f.hold).UnixNano())
	}
}

func (f *fullMark) clear() { f.until.Store(0) }

// full reports whether MAIL should be refused at now.
func (f *fullMark) full(now time.Time) bool { return now.UnixNano() < f.until.Load() }
