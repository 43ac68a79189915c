package confmail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/twinmx/twinmx/pkg/model"
	"github.com/twinmx/twinmx/pkg/wire"
	"github.com/twinmx/twinmx/pkg/wire/config"
	"github.com/twinmx/twinmx/services/spamd/internal/msgauth"
)

// txtResolver is a msgauth.Resolver that knows some TXT records and
// nothing else.
type txtResolver map[string]string

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r txtResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, notFound(name)
}

func (txtResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	return nil, notFound(host)
}

func (txtResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}

func (txtResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}

// TestReplayUnicodeSignatureDomain: an admin's domain signs with its d=
// written as U-labels (RFC 8616). msgauth reports the domain as its
// A-label; the signature must still be recorded, so a copy with a field
// added (a new mail key) is a replay. It was not recorded: d= and the
// verified domain were compared as written, and the copy undid a later
// change.
func TestReplayUnicodeSignatureDomain(t *testing.T) {
	ctx := context.Background()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const admin = "boss@xn--bcher-kva.test"
	db := newFakeDB()
	ac := config.AdminContent(admin)
	if _, err := db.Batch(ctx, []wire.Request{
		{Op: wire.OpFindOrInsert, Table: model.Mailbox, Content: []byte("u@x.test")},
		{Op: wire.OpFindOrInsert, Table: model.Config, Content: ac},
		{Op: wire.OpSet, Table: model.Config, Ref: wire.Ref{Content: ac}, Name: config.ColAdmin,
			Value: model.MemberValue(time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC), true)},
	}); err != nil {
		t.Fatal(err)
	}
	auth := msgauth.New(txtResolver{"sel._domainkey.xn--bcher-kva.test": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, msgauth.Config{})
	w := &configWorld{db: db, m: New(Config{DB: db, Apply: db, Auth: auth, Sender: &fakeSender{}, Hostname: "mx.x.test"})}
	t.Cleanup(w.m.wg.Wait)
	sign := func(id, body string) []byte {
		raw := strings.ReplaceAll("From: Boss <"+admin+">\nTo: config@x.test\nSubject: config\nMessage-ID: <"+id+"@x.test>\n\n"+body, "\n", "\r\n")
		var out bytes.Buffer
		if err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{Domain: "bücher.test", Selector: "sel", Signer: priv,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: []string{"From", "To", "Subject", "Message-ID"}}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	block := sign("c1", "block u@x.test @spam.example\n")
	if ok, reason := w.apply(t, block, t0); !ok || !strings.Contains(reason, "1 changes applied") {
		t.Fatalf("block mail: %v %q", ok, reason)
	}
	if ok, reason := w.apply(t, sign("c2", "unlist u@x.test @spam.example\n"), t0.Add(time.Minute)); !ok || !strings.Contains(reason, "1 changes applied") {
		t.Fatalf("unlist mail: %v %q", ok, reason)
	}
	replay := append([]byte("X-Replayed: yes\r\n"), block...)
	ok, reason := w.apply(t, replay, t0.Add(time.Hour))
	if !ok || !strings.Contains(reason, "replay") {
		t.Errorf("copy of the block mail: Apply = %v, %q; want a replay", ok, reason)
	}
	if got := w.listKind(t); got != "removed" {
		t.Errorf("after the copy: list entry %s, want removed", got)
	}
}
