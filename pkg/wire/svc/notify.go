package svc

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Ready tells systemd that the program serves (sd_notify READY=1), so
// units of Type=notify count as started and units ordered after it start
// now. Without NOTIFY_SOCKET (not under systemd, or on Windows) it does
// nothing. A failure is not the caller's concern: it is returned by Notify
// and dropped here.
func Ready() { _ = Notify("READY=1") }

// Stopping tells systemd that the program is shutting down.
func Stopping() { _ = Notify("STOPPING=1") }

// Notify sends state (newline-separated VARIABLE=value lines, see
// sd_notify(3)) to the unixgram socket named by NOTIFY_SOCKET: a path, or
// an abstract socket written with a leading @.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
