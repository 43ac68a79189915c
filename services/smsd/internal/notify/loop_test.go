package notify

import (
	"errors"
	"strings"
	"testing"
)

// TestForwardLoopStops: a forward copy carries a Delivered-To field for
// the mailbox it was forwarded from; the same mail coming round to that
// mailbox again (a forward to an address that forwards back) is not
// forwarded a second time, a permanent failure. Before, nothing marked
// a copy, and a loop ran until smtpd's --max-hops refused the mail.
func TestForwardLoopStops(t *testing.T) {
	mail := []byte("Received: by mx.test\r\nSubject: hi\r\n\r\nDelivered-To: jo@a.test in the body counts not\r\n")
	first, err := markForwarded(mail, "jo@a.test")
	if err != nil || !strings.HasPrefix(string(first), "Delivered-To: jo@a.test\r\nReceived:") {
		t.Fatalf("first forward: %q, %v", first, err)
	}
	// The copy came back to jo's mailbox through another mailbox that
	// forwards to jo, and goes on through that one (another address).
	back := append([]byte("Received: by mx.test\r\nDelivered-To: ann@b.test\r\n"), first...)
	if _, err := markForwarded(back, "ann@b.test"); err == nil {
		t.Error("ann's mailbox forwarded a mail it had forwarded before")
	}
	_, err = markForwarded(back, "JO@a.test")
	var p interface{ Permanent() bool }
	if !errors.As(err, &p) || !p.Permanent() {
		t.Fatalf("jo's mailbox again: %v, want a permanent loop error", err)
	}
	if _, err := markForwarded(mail, "ann@b.test"); err != nil {
		t.Errorf("a Delivered-To line in the body stopped the forward: %v", err)
	}
}
