package model_test

import (
	"bytes"
	"fmt"

	"github.com/twinmx/twinmx/pkg/model"
)

func ExampleKeyOf() {
	// Every spelling of a mailbox gets the same row, hence the same key on
	// every site.
	a := model.KeyOf(model.Mailbox, model.MailboxContent("<Jo@Example.COM>"))
	b := model.KeyOf(model.Mailbox, model.MailboxContent("Jo@example.com"))
	fmt.Println(a == b)
	fmt.Println(a)
	// The same content in another table has an unrelated key.
	fmt.Println(a == model.KeyOf(model.Text, []byte("Jo@example.com")))
	// Output:
	// true
	// 3f16ab57b7726bdd6ccb9b04f8476713f1f1627c64087a54a36692a050daa303
	// false
}

func ExampleSplit() {
	raw := []byte("Received: from a.example by mx.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
		"Message-ID: <42@a.example>\r\n" +
		"Subject: hello\r\n" +
		"\r\n" +
		"Hi!\r\n")
	p := model.Split(raw)
	fmt.Printf("header %q\n", p.Header)
	fmt.Printf("body %q\n", p.Body)
	fmt.Printf("message-id %q\n", p.MessageID)
	fields, _ := model.ReceivedFields(p.Received)
	for _, f := range fields {
		fmt.Printf("received at %d: %q\n", f.Index, f.Raw)
	}

	back, err := model.Join(p)
	fmt.Println(bytes.Equal(back, raw), err)

	// A retry through another relay has other Received fields but is the
	// same mail.
	retry := append([]byte("Received: from b.example by mx2.example\r\n"), raw...)
	fmt.Println(model.NewMailRows(retry).MailKey == model.NewMailRows(raw).MailKey)
	// Output:
	// header "Message-ID: <42@a.example>\r\nSubject: hello\r\n\r\n"
	// body "Hi!\r\n"
	// message-id "42@a.example"
	// received at 0: "Received: from a.example by mx.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	// true <nil>
	// true
}

func ExampleMerge() {
	// Site A acknowledged the mail and counted one download; site B
	// counted two downloads and marked the row deleted.
	var a, b model.State
	a.Set(model.ColAcknowledged, model.FlagSet)
	a.Add("downloads", "site-a", 1)
	b.Add("downloads", "site-b", 2)
	b.Set(model.ColDeleted, model.FlagSet)

	m := model.Merge(a, b)
	fmt.Println(m.Col(model.ColAcknowledged), m.Col(model.ColDeleted), m.Counter("downloads"))
	// Replicating again changes nothing.
	changed, _ := m.MergeInto(a)
	fmt.Println(changed, model.Merge(b, a).Equal(m))
	// Output:
	// 1 1 3
	// false true
}

func ExampleEncodeVerdict() {
	filter := model.EncodeVerdict(model.SourceFilter, 1_700_000_100, model.Reject)
	operator := model.EncodeVerdict(model.SourceOperator, 1_700_000_000, model.Accept)

	// The operator's verdict wins although it is older: the source sits
	// above the epoch.
	src, epoch, v, ok := model.DecodeVerdict(max(filter, operator))
	fmt.Println(src, epoch, v, ok)

	// A column never goes down, so a later filter verdict cannot undo it.
	var s model.State
	s.Set(model.ColVerdict, operator)
	changed, _ := s.Set(model.ColVerdict, model.EncodeVerdict(model.SourceFilter, 1_800_000_000, model.Reject))
	fmt.Println(changed)
	// Output:
	// operator 1700000000 accept true
	// false
}
