package modelstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/services/spamd/internal/classify"
	"github.com/twinmx/twinmx/services/spamd/internal/spamdtest"
)

func trained(t *testing.T, spam string) *classify.Model {
	t.Helper()
	var docs []classify.Doc
	for range 10 {
		docs = append(docs,
			classify.Doc{Tokens: classify.Tokens([]byte("Subject: " + spam + "\n\nbuy " + spam + " now")), Class: classify.Spam},
			classify.Doc{Tokens: classify.Tokens([]byte("Subject: meeting\n\nthe agenda is attached")), Class: classify.Ham})
	}
	return classify.Train(docs)
}

// TestPushClockBehind: a model pushed from a host whose clock is behind
// the previous pusher's becomes the model. Before, its link was valued
// with its own clock, below the previous push's, so `spamd push` reported
// it pushed and every instance went on judging with the old model.
func TestPushClockBehind(t *testing.T) {
	ctx := context.Background()
	db := spamdtest.NewDB()
	t0 := time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)
	k1, err := Push(ctx, db, trained(t, "pills"), t0)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Push(ctx, db, trained(t, "casino"), t0.Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if k1 == k2 {
		t.Fatal("two different models have one key")
	}
	if _, k, err := Load(ctx, db); err != nil || k != k2 {
		t.Fatalf("Load = %s, %v; want the last pushed model %s (not %s)", k, err, k2, k1)
	}
	// Pushing the first model again (a rollback) makes it current again.
	if _, err := Push(ctx, db, trained(t, "pills"), t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, k, err := Load(ctx, db); err != nil || k != k1 {
		t.Fatalf("after the rollback Load = %s, %v; want %s", k, err, k1)
	}
}

// TestInitCorruptModel: a model row dbd holds that does not decode is
// reported as classify.ErrBadModel (the daemon then judges without it)
// and leaves the fallback in place.
func TestInitCorruptModel(t *testing.T) {
	ctx := context.Background()
	db := spamdtest.NewDB()
	b, err := trained(t, "pills").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	k := db.Insert(model.Text, b)
	db.Put(model.Config, anchor, model.LinkColumn(linkPrefix, k), uint64(time.Now().UnixMilli()))
	fallback := trained(t, "casino")
	live := NewLive(fallback)
	if err := live.Init(ctx, db); !errors.Is(err, classify.ErrBadModel) {
		t.Fatalf("Init with a corrupt model = %v, want ErrBadModel", err)
	}
	if live.Current() != fallback {
		t.Error("a corrupt model replaced the fallback")
	}
}
