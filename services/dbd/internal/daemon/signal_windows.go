//go:build windows

package daemon

import "os"

// Windows has no SIGHUP; the clients file is reloaded when it changes.
func notifyHangup(chan<- os.Signal) {}
