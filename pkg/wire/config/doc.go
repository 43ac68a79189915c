// Package config is twinmx's configuration language: a small command
// file, one command a line, that changes mailboxes, accounts' mailboxes
// and aliases, spamd's allow/block lists, header filters, smsd's rules,
// zones, forward copies and lists, and the admins who may send such files
// by e-mail (SPEC §9, issue 7). spamd applies the files mailed to the
// config address (services/spamd/internal/confmail); dbctl config applies
// files and shows the configuration as such a file.
//
// Parse is pure: it turns text into Lines, each a Command or an error.
// Translate reads the current settings and turns the lines into ONE batch
// of wire requests: every change, one history row per command and, for a
// mail, the record that makes a replay change nothing. When any line fails
// the plan has no batch at all (all or nothing); sending the batch is one
// atomic dbd write. A larger file (ParseLarge, dbctl's) may need more
// requests than dbd takes in one batch: Plan.Parts splits it into atomic
// parts of whole lines, sent in order. A line whose change would give a row more than
// model.MaxColumns columns fails as a line, so dbd never refuses the batch
// for that.
//
// # Rows
//
//	table   content                           columns
//	config  twinmx-config-admin/1 (address)   admin = MemberValue; pw.<key> = time (ms) linking the secret row
//	text    twinmx-config-secret/1 (address,   -
//	        hash: an argon2id PHC string or none)
//	config  twinmx-config-change/1 (when, who, config.change = when (ms)
//	        via, line, previous)
//	text    twinmx-config-mail/1 (mail key)   config.applied = when (ms)
//	text    twinmx-list/1 (mailbox, sender)   list = ms<<2 | kind (spamd's allow/block lists)
//
// The SMS rows (rules, zones, forwards, list entries) are package
// smsrules's. Every value rises with the change time, so the latest change
// wins on both sites whatever order replication brings them in. Within one
// file command i is changed at Now + i ms, so a later line wins over an
// earlier one on the same setting.
//
// History is found by scanning the config table (it holds a few rows per
// mailbox besides the changes), not through an anchor row: a row has at
// most model.MaxColumns columns, which a long history would exceed.
package config
