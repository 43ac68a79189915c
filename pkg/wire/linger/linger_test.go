package linger

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCloseSendsFIN: a connection closed with unread input ends with FIN:
// the client reads the last reply and then a clean EOF, not a reset.
func TestCloseSendsFIN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("QUIT\r\n" + strings.Repeat("NOOP\r\n", 4<<10)))
	time.Sleep(50 * time.Millisecond) // the input waits unread
	server.Write([]byte("221 bye\r\n"))
	if err := Close(server); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if string(got) != "221 bye\r\n" || err != nil {
		t.Fatalf("client read %q, %v; want the reply and a clean end", got, err)
	}
}
