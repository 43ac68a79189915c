//go:build race

package daemon

// raceEnabled: the race detector slows imapd some tenfold; the big-mailbox
// test takes fewer mails then.
const raceEnabled = true
