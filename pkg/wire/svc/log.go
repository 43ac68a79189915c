package svc

import (
	"log/slog"
	"os"
)

// Logger is the log of a daemon: text lines on standard error (where
// systemd's journal collects them) at level Info, or Debug with the
// program's --debug.
func Logger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
