package judge

import (
	"strings"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
)

// TestScoreOfFinalVerdict: spam.score only rises (max-merge), so the
// score a greylisted first contact's Retry wrote outlived the definite
// verdict of its retry: a mail allowed in between read as accepted at the
// Retry's 0.5. The column holds the score of the definite verdict.
func TestScoreOfFinalVerdict(t *testing.T) {
	w := newWorld(t, nil) // no model: unsure (0.5), so greylisted
	const from = "alice@orig.example"
	mk := w.mail("one")
	if v, r := w.attempt(mk, from, 0); v != model.Retry {
		t.Fatalf("first contact = %v (%s), want retry", v, r)
	}
	w.db.Put(model.Text, ListContent(testRcpt, from), colList, ListValue(w.now, ListAllow))
	if v, r := w.attempt(mk, from, 2*time.Minute); v != model.Accept || !strings.Contains(r, "allow list") {
		t.Fatalf("retry after the delay = %v (%s), want accept by the allow list", v, r)
	}
	rc := model.ReceiveContent(mk, model.KeyOf(model.Mailbox, model.MailboxContent(testRcpt)))
	if got := w.db.Col(model.Receive, rc, colScore); got != 0 {
		t.Errorf("spam.score = %d, want 0 (the allow list's score)", got)
	}
}
