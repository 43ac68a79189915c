//go:build !windows

package daemon

import (
	"os"
	"os/signal"
	"syscall"
)

func notifyHangup(ch chan<- os.Signal) { signal.Notify(ch, syscall.SIGHUP) }
