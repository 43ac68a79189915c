// Package smsrules holds smsd's per-mailbox configuration as dbd rows and the
// pure decisions made from it: which sender triggers an SMS, in which
// weekday and time-of-day windows (in the mailbox's IANA time zone), to
// which numbers, with which text, and where forward copies go (SPEC §9).
//
// # Rows
//
// Every setting is a text row whose content names its mailbox, linked from
// the mailbox row by a status column. Contents never change (a row's key is
// its content); an edit is a new row and a newer link. Link values are
// model.MemberValue: the change time in Unix ms shifted left by one, with
// the low bit saying "on". Columns only rise, so the latest edit wins on
// both sites whatever the order replication brings them in.
//
//	mailbox column    links to text row               meaning
//	sms.r.<key>       RuleContent (twinmx-sms-rule/1)  an SMS rule (several may be on)
//	sms.z.<key>       ZoneContent (twinmx-sms-zone/1)  the mailbox's time zone (newest on wins)
//	fwd.<key>         ForwardContent (twinmx-fwd/1)    a forward-copy address (several may be on)
//
// List entries ("hotline customers") are not linked: each entry is a text
// row ListEntryContent(mailbox, list, sender) whose column sms.list holds a
// MemberValue. smsd looks a sender up by computing the key of the row for
// its address and for its "@domain", so a list can be large.
//
// <key> is the text row's key in lower-case base32 (model.LinkColumn).
// The package lives beside the configuration language (pkg/wire/config), so
// smsd, its commands, dbctl config and spamd's configuration by e-mail read
// and write these rows with one code. docs/smsd.md documents the formats.
package smsrules
