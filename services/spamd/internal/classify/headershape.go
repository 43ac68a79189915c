package classify

import (
	"bytes"
	"strings"
)

// senderFields are the header fields a mail program writes when it
// composes a mail, each with a short code for the layout token. Which of
// them a program writes, and in what order, is a fingerprint of the
// program: spamware of 2002 and of today writes its own few layouts. Relay,
// list and mailbox fields (Received, List-*, Sender, Delivered-To, X-Status,
// X-Keywords, X-Spam-*, ...) are deliberately absent: they say who carried
// or collected the mail, not who wrote it.
var senderFields = map[string]string{
	"from": "f", "to": "t", "cc": "c", "bcc": "b", "subject": "s", "date": "d",
	"message-id": "i", "mime-version": "v", "content-type": "y",
	"content-transfer-encoding": "e", "reply-to": "r", "x-mailer": "m",
	"user-agent": "u", "x-priority": "p", "x-msmail-priority": "q",
	"x-mimeole": "o", "importance": "n", "organization": "g",
	"in-reply-to": "j", "references": "k", "content-class": "l",
	"thread-index": "x", "thread-topic": "z", "x-accept-language": "a",
	"content-disposition": "w", "disposition-notification-to": "h",
	"x-ms-has-attach": "X", "x-ms-tnef-correlator": "T", "comments": "C",
	"keywords": "K", "x-face": "F", "x-originating-ip": "I",
}

// maxLayout is how many sender fields the layout token names.
const maxLayout = 8

// layout adds tokens for which sender fields are present ("hn:organization")
// and the order of the first few of them ("ho:fsdtiv"), and whether a
// Subject that says "Re:" belongs to a thread (In-Reply-To or References):
// a reply without them is a classic spam trick.
func (t *tokenizer) layout(fs fields) {
	var order [maxLayout]byte
	n := 0
	seen := map[string]bool{}
	for _, f := range fs {
		code, ok := senderFields[f.name]
		if !ok || seen[f.name] {
			continue
		}
		seen[f.name] = true
		t.addString(pHeaderName, f.name)
		if n+len(code) <= len(order) {
			n += copy(order[n:], code)
		}
	}
	t.add(pHeaderOrder, order[:n])
	if s := fs.get("subject"); s != nil {
		s = bytes.TrimSpace(s)
		if len(s) >= 3 && strings.EqualFold(string(s[:3]), "re:") {
			if seen["in-reply-to"] || seen["references"] {
				t.addString(pMeta, "re:thread")
			} else {
				t.addString(pMeta, "re:nothread")
			}
		}
	}
}
