package store

import (
	"fmt"
	"log/slog"
	"os"
)

// pebbleLogger sends Pebble's own log lines to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on unrecoverable corruption; it must not
// return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble fatal: " + fmt.Sprintf(format, args...))
	os.Exit(2)
}
