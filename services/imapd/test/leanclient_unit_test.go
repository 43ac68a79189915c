package test

import (
	"bufio"
	"compress/flate"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// TestLeanClientCounts checks what the benchmark's lean client counts
// against a scripted server: FETCH responses and literal bytes, with
// literals that hold what looks like a tagged OK, a FETCH line and a
// literal of their own, and a line whose rest after a literal looks like
// another FETCH, plain and with COMPRESS=DEFLATE.
func TestLeanClientCounts(t *testing.T) {
	bodies := []string{
		"Subject: a\r\n\r\nl2 OK not the end\r\n* 9 FETCH (UID 9 BODY[] {3}\r\n",
		"",
		"x{5}\r\n",
	}
	var fetch strings.Builder
	var want int64
	for i, b := range bodies {
		fmt.Fprintf(&fetch, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", i+1, i+1, len(b), b)
		want += int64(len(b))
	}
	// The rest of a line after a literal is not a new response, even
	// when it reads like one.
	fetch.WriteString("* 4 FETCH (UID 4 BODY[] {1}\r\nZ* 5 FETCH (UID 5))\r\n")
	bodies = append(bodies, "Z")
	want++
	fetch.WriteString("* 3 EXISTS\r\n")
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() { done <- scriptedIMAP(ln, compress, fetch.String()) }()
			c, err := dialLean(ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if _, _, err := c.cmd(`LOGIN "u" "p w"`); err != nil {
				t.Fatal(err)
			}
			if compress {
				if err := c.compress(); err != nil {
					t.Fatal(err)
				}
			}
			n, size, err := c.cmd("UID FETCH 1:* (BODY.PEEK[])")
			if err != nil {
				t.Fatal(err)
			}
			if n != len(bodies) || size != want {
				t.Errorf("counted %d FETCH responses and %d literal bytes, want %d and %d", n, size, len(bodies), want)
			}
			if _, _, err := c.cmd("NOOP"); err == nil || !strings.Contains(err.Error(), "BAD") {
				t.Errorf("a BAD answer gave %v, want an error naming it", err)
			}
			c.conn.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// scriptedIMAP serves one connection: the greeting, OK to LOGIN (and
// to COMPRESS, after which both directions are deflated), the response
// fetch to the FETCH command, and BAD to anything else.
func scriptedIMAP(ln net.Listener, compress bool, fetch string) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var w io.Writer = conn
	flush := func() error { return nil }
	if _, err := io.WriteString(w, "* OK ready\r\n"); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil // the client hung up
		}
		tag, cmd, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), " ")
		verb, _, _ := strings.Cut(cmd, " ")
		var reply string
		switch verb {
		case "LOGIN":
			reply = tag + " OK logged in\r\n"
		case "COMPRESS":
			if _, err := io.WriteString(w, tag+" OK DEFLATE active\r\n"); err != nil {
				return err
			}
			fw, err := flate.NewWriter(conn, flate.BestSpeed)
			if err != nil {
				return err
			}
			w, flush = fw, fw.Flush
			r = bufio.NewReader(flate.NewReader(r))
			continue
		case "UID":
			reply = fetch + tag + " OK done\r\n"
		default:
			reply = tag + " BAD unknown\r\n"
		}
		if _, err := io.WriteString(w, reply); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
	}
}
