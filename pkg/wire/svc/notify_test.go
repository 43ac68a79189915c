package svc

import (
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// listenNotify is systemd's side: a unixgram socket named by NOTIFY_SOCKET.
func listenNotify(t *testing.T, name, env string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", env)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n])
}

func TestReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listenNotify(t, path, path)
	Ready()
	if got := readNotify(t, c); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
	Stopping()
	if got := readNotify(t, c); got != "STOPPING=1" {
		t.Errorf("got %q, want STOPPING=1", got)
	}
}

func TestNotifyAbstract(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix sockets are Linux only")
	}
	name := "twinmx-notify-test-" + filepath.Base(t.TempDir())
	c := listenNotify(t, "\x00"+name, "@"+name)
	if err := Notify("READY=1\nSTATUS=serving"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, c); got != "READY=1\nSTATUS=serving" {
		t.Errorf("got %q", got)
	}
}

func TestNotifyErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, want nil (not under systemd)", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	if err := Notify("READY=1"); err == nil {
		t.Error("a missing socket gave no error")
	}
	Ready() // must not panic or block
}
