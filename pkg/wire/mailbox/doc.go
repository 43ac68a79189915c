// Package mailbox is the view of a user's mail that pop3d and imapd share
// (SPEC §8), over dbd's wire protocol with the mailbox role: checking a
// login, listing a mailbox's mail, reading a mail back byte for byte,
// marking mail deleted, and the per-mailbox header filters.
//
// A mailbox holds exactly the receive rows that are acknowledged (SPEC §5:
// a mail is in a mailbox when smtpd durably decided to answer 250) and not
// deleted. Rows are listed through dbd's parent index, in the order they
// arrived at this site; their keys are the same on every site, which is
// what makes POP3 UIDLs survive a failover.
//
// A mail is rebuilt from its rows: the mail row names the header and body
// rows, and the receive row links (model.AcknowledgedReceived) the received
// row of the delivery that was acknowledged; model.Join puts them back
// together exactly as received.
package mailbox
