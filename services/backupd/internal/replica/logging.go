package replica

import (
	"context"
	"log/slog"
)

// quiet returns a logger that writes log's warnings and infos at debug
// level (errors stay errors). The dbd clients log every failed dial at
// warning; the pump reports the same failure itself, once per change of
// state (linkState), so a peer down for hours does not write a line per
// retry (every 5 s, per pump and the marker).
func quiet(log *slog.Logger) *slog.Logger {
	return slog.New(demoted{log.Handler()})
}

// demoted is a slog.Handler that lowers records below error to debug.
type demoted struct{ h slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	if l < slog.LevelError {
		l = slog.LevelDebug
	}
	return d.h.Enabled(ctx, l)
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(n string) slog.Handler       { return demoted{d.h.WithGroup(n)} }
