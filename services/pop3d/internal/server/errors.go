package server

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/twinmx/twinmx/services/pop3d/internal/metrics"
	"github.com/twinmx/twinmx/services/pop3d/internal/pop3"
)

// Error is a POP3 error reply: "-ERR [Code] Msg". Code is an RFC 2449 /
// RFC 3206 response code ("AUTH", "SYS/TEMP", "SYS/PERM") or "". With Close
// set, the connection ends after the reply.
type Error struct {
	Code  string
	Msg   string
	Close bool
}

func (e *Error) Error() string { return "pop3: " + e.line() }

func (e *Error) line() string {
	if e.Code == "" {
		return "-ERR " + e.Msg
	}
	return "-ERR [" + e.Code + "] " + e.Msg
}

// Temporary reports whether the client may succeed by trying again later.
func (e *Error) Temporary() bool { return e.Code == "SYS/TEMP" || e.Code == "IN-USE" }

// The replies pop3d sends for each failure.
var (
	errBadState      = &Error{Msg: "command not valid in this state"}
	errNoSuchMessage = &Error{Msg: "no such message"}
	errDeleted       = &Error{Msg: "message is deleted"}
	errAuthFailed    = &Error{Code: "AUTH", Msg: "invalid login or password"}
	errAuthBlocked   = &Error{Code: "AUTH", Msg: "too many failed logins from your address; try again later", Close: true}
	errNeedTLS       = &Error{Code: "AUTH", Msg: "plaintext login needs TLS: use STLS"}
	errNeedUser      = &Error{Msg: "send USER first"}
	errMechanism     = &Error{Msg: "unsupported mechanism (only PLAIN)"}
	errBadResponse   = &Error{Msg: "malformed SASL response"}
	errCancelled     = &Error{Msg: "authentication cancelled"}
	errNoTLS         = &Error{Msg: "STLS not available"}
	errTLSActive     = &Error{Msg: "TLS already active"}
	errTemp          = &Error{Code: "SYS/TEMP", Msg: "temporary failure, try again later"}
	errUpdate        = &Error{Code: "SYS/TEMP", Msg: "some deleted messages not removed; try again later", Close: true}
	errShutdown      = &Error{Code: "SYS/TEMP", Msg: "server shutting down", Close: true}
	errTooLong       = &Error{Msg: "line too long", Close: true}
	errTooManyErrors = &Error{Msg: "too many errors", Close: true}
	errInternal      = &Error{Code: "SYS/TEMP", Msg: "internal error", Close: true}
	errIdle          = &Error{Msg: "autologout: idle for too long", Close: true}
)

// errIO is returned by a handler when the connection broke mid-response:
// nothing more can be written.
var errIO = errors.New("server: connection broken")

// replyFor maps any error of a command to its reply. It is the one place
// that does: a *Error is sent as it is; a parser error gets its own
// text; anything else is a generic temporary failure, logged once and
// counted (peers never see internal detail). protocol tells whether the
// error counts towards Config.MaxErrors.
func replyFor(err error, log *slog.Logger, m *metrics.Metrics) (reply *Error, protocol bool) {
	var pe *Error
	var se *pop3.SyntaxError
	switch {
	case errors.As(err, &pe):
		return pe, pe == errBadState
	case errors.Is(err, pop3.ErrUnknown):
		return &Error{Msg: "unknown command"}, true
	case errors.Is(err, pop3.ErrTooLong):
		return errTooLong, true
	case errors.As(err, &se):
		return &Error{Msg: "syntax error: " + se.Msg}, true
	case errors.Is(err, context.Canceled):
		return errShutdown, false
	}
	log.Error("store request", "err", err)
	m.Errors.WithLabelValues(metrics.ErrorDB).Inc()
	return errTemp, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
