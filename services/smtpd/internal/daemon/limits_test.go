package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire/client"
)

// headerMail returns a mail whose header section (separator line
// included) is exactly n bytes, with hops Received fields among them.
func headerMail(tag string, n, hops int) []byte {
	var h strings.Builder
	for i := range hops {
		fmt.Fprintf(&h, "Received: from hop%d.x.test by hop%d.x.test; Sun, 29 Nov 2026 10:00:00 +0000\r\n", i, i+1)
	}
	h.WriteString("From: a@x.test\r\nSubject: " + tag + "\r\nMessage-ID: <" + tag + "@x.test>\r\n")
	// One X-Fill field brings the section to n: "X-Fill: " + fill + CRLF,
	// then the CRLF separator.
	fill := n - h.Len() - len("X-Fill: \r\n") - 2
	if fill < 0 {
		panic("headerMail: n too small")
	}
	h.WriteString("X-Fill: " + strings.Repeat("f", fill) + "\r\n\r\n")
	h.WriteString("body of " + tag + "\r\n")
	return []byte(h.String())
}

func (e *env) stored(raw []byte) bool {
	e.t.Helper()
	_, err := e.admin.FindKey(context.Background(), model.Header, model.NewMailRows(raw).HeaderKey)
	if errors.Is(err, client.ErrNotFound) {
		return false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return true
}

// TestHeaderLimits: a header section of exactly --max-header-size bytes
// and exactly --max-hops Received fields is taken; one byte or one hop
// more is refused (552 5.3.4, 554 5.4.6: a loop) and nothing of the mail is
// stored (TEST-CATALOG items 31 and 33).
func TestHeaderLimits(t *testing.T) {
	const size, hops = 20_000, 5
	e := start(t, func(c *Config) { c.MaxHeaderSize, c.MaxHops, c.MinCopies = size, hops, 1 })
	e.mailbox("jo@example.org", 0)
	for _, tc := range []struct {
		name     string
		header   int // bytes of the header section
		hops     int
		code     int
		enhanced smtp.EnhancedCode
	}{
		{"header at the limit", size, 0, 250, smtp.EnhancedCode{}},
		{"header one byte over", size + 1, 0, 552, smtp.EnhancedCode{5, 3, 4}},
		{"hops at the limit", 2000, hops, 250, smtp.EnhancedCode{}},
		{"one hop over", 2000, hops + 1, 554, smtp.EnhancedCode{5, 4, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := headerMail(strings.ReplaceAll(tc.name, " ", "-"), tc.header, tc.hops)
			if got, n := model.HeaderSectionLen(raw), model.ReceivedCount(raw); got != tc.header || n != tc.hops {
				t.Fatalf("test mail: header section %d bytes, %d hops; want %d, %d", got, n, tc.header, tc.hops)
			}
			if tc.code == 250 {
				e.decideLater(receiveKey(raw, "jo@example.org"), model.Accept, false)
			}
			code, msg := e.send("a@x.test", []string{"jo@example.org"}, raw)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, msg, tc.code)
			}
			if tc.code != 250 {
				if want := fmt.Sprintf("%d.%d.%d", tc.enhanced[0], tc.enhanced[1], tc.enhanced[2]); !strings.HasPrefix(msg, want) {
					t.Fatalf("reply %q, want enhanced code %s", msg, want)
				}
				if e.stored(raw) {
					t.Fatal("the refused mail's header was stored")
				}
			} else if !e.stored(raw) {
				t.Fatal("the accepted mail is not stored")
			}
		})
	}
}

// TestDefaultHopLimit: with the default limits a mail that has made 101
// hops is a loop (RFC 5321 §6.3), one of 100 is not.
func TestDefaultHopLimit(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	e.mailbox("jo@example.org", 0)
	ok := headerMail("hops-100", 20_000, 100)
	e.decideLater(receiveKey(ok, "jo@example.org"), model.Accept, false)
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, ok); code != 250 {
		t.Fatalf("100 hops: %d %s, want 250", code, msg)
	}
	if code, msg := e.send("a@x.test", []string{"jo@example.org"}, headerMail("hops-101", 20_000, 101)); code != 554 {
		t.Fatalf("101 hops: %d %s, want 554", code, msg)
	}
}

// TestRecipientLimit: with the default limit the first 100 recipients are
// taken, the 101st gets 452 4.5.3 (RFC 5321 §4.5.3.1.8: a client must
// then send the rest in another transaction), and the mail reaches
// exactly the 100 (TEST-CATALOG item 17).
func TestRecipientLimit(t *testing.T) {
	e := start(t, func(c *Config) { c.MinCopies = 1 })
	var rcpts []string
	for i := range 101 {
		r := fmt.Sprintf("u%03d@example.org", i)
		e.mailbox(r, 0)
		rcpts = append(rcpts, r)
	}
	raw := []byte("From: a@x.test\r\nSubject: many\r\nMessage-ID: <many@x.test>\r\n\r\nhi\r\n")
	for _, r := range rcpts[:100] {
		e.decideLater(receiveKey(raw, r), model.Accept, false)
	}
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@x.test", nil); err != nil {
		t.Fatal(err)
	}
	for i, r := range rcpts {
		err := c.Rcpt(r, nil)
		var se *smtp.SMTPError
		switch {
		case i < 100 && err != nil:
			t.Fatalf("RCPT %d: %v", i+1, err)
		case i == 100 && (!errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != smtp.EnhancedCode{4, 5, 3}):
			t.Fatalf("RCPT 101: %v, want 452 4.5.3", err)
		}
	}
	if err := sendData(c, raw); err != nil {
		t.Fatalf("end of data: %v, want 250", err)
	}
	ctx := context.Background()
	for i, r := range rcpts {
		_, err := e.admin.FindKey(ctx, model.Receive, receiveKey(raw, r))
		switch {
		case i < 100 && err != nil:
			t.Fatalf("recipient %d: %v", i+1, err)
		case i == 100 && !errors.Is(err, client.ErrNotFound):
			t.Fatalf("recipient 101 has a receive row (%v)", err)
		}
	}
}
