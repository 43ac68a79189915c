package model

import (
	"errors"
	"fmt"
)

// Table names one of the 13 tables of SPEC §3. The numeric value is part of
// the wire protocol and of dbd's disk layout: never renumber a table.
type Table uint8

// The tables of SPEC §3.
const (
	Body     Table = 1  // the mail content after the header
	Header   Table = 2  // a mail header, all Received: lines removed
	Received Table = 3  // the Received: lines of one delivery
	Mail     Table = 4  // one unique mail: references its header and body
	MsgID    Table = 5  // a Message-ID
	Mailbox  Table = 6  // a receiving mailbox (address)
	Receive  Table = 7  // one mail in one mailbox: references mail and mailbox
	ThrowIn  Table = 8  // one delivery attempt: client, HELO, envelope, TLS, our reply
	Capture  Table = 9  // the raw SMTP transcript of one attempt
	RDNS     Table = 10 // reverse DNS and other facts about a client IP
	POP3     Table = 11 // an account (login for POP3/IMAP, or an external account)
	Text     Table = 12 // small texts: user names, password hashes, windows, phones
	Config   Table = 13 // configuration of the server and of mailboxes
)

// ErrUnknownTable is returned for a table name or number that is not one of
// the 13 tables. Use errors.Is(err, ErrUnknownTable).
var ErrUnknownTable = errors.New("model: unknown table")

var tableNames = [...]string{
	Body:     "body",
	Header:   "header",
	Received: "received",
	Mail:     "mail",
	MsgID:    "msgid",
	Mailbox:  "mailbox",
	Receive:  "receive",
	ThrowIn:  "throw-in",
	Capture:  "capture",
	RDNS:     "rdns",
	POP3:     "pop3",
	Text:     "text",
	Config:   "config",
}

// Tables returns all tables in numeric order.
func Tables() []Table {
	ts := make([]Table, 0, len(tableNames)-1)
	for t := Body; t <= Config; t++ {
		ts = append(ts, t)
	}
	return ts
}

// Valid reports whether t is one of the 13 tables.
func (t Table) Valid() bool { return t >= Body && t <= Config }

// String returns the table's name as used on the command line and in dumps.
func (t Table) String() string {
	if !t.Valid() {
		return fmt.Sprintf("table(%d)", uint8(t))
	}
	return tableNames[t]
}

// ParseTable returns the table with the given name ("body", "throw-in", ...).
func ParseTable(name string) (Table, error) {
	for t := Body; t <= Config; t++ {
		if tableNames[t] == name {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownTable, name)
}

// CheckTable returns ErrUnknownTable unless t is valid.
func CheckTable(t Table) error {
	if !t.Valid() {
		return fmt.Errorf("%w %d", ErrUnknownTable, uint8(t))
	}
	return nil
}
