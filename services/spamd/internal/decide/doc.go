// Package decide is spamd's policy: it turns what is known about one mail
// for one mailbox into accept, reject or retry (SPEC §7). The daemon and
// `spamd eval` use the same Decide.
//
// twinmx rejects spam during SMTP and has no spam folder, so rejecting a
// wanted mail is the worst error there is: the policy rejects only when
// sure, and when unsure it accepts. Rules, strongest first:
//
//  1. Block list (mailbox list or operator rule) → reject.
//  2. Allow list → accept.
//  3. Known correspondent (this mailbox accepted mail from the sender
//     before) → accept.
//  4. DMARC fail where the From domain asks for reject (signal.Auth
//     DMARCReject), and the classifier does not find the mail clearly ham
//     (p >= ClearHam) → reject. Only a definite Fail counts: a DNS outage
//     (TempError) never leads to reject.
//  5. Classifier very sure spam (p >= RejectAt; ExternalRejectAt when an
//     external engine also says spam) → reject, but retry on first
//     contact (GreyFirst): greylisting gives a first contact a chance and
//     most robots never retry; a sender that does is judged again.
//  6. Authenticated, aligned sender (DMARC pass, or DKIM/SPF pass aligned
//     with From) and clearly ham (p < ClearHam) → accept.
//  7. First contact (GreyFirst) that is not clearly good → retry. Clearly
//     good: clearly ham, or authenticated and leaning ham (p < LeanHam).
//  8. Otherwise → accept.
//
// An external engine never rejects alone; it only lowers the classifier's
// bar (rule 5). The thresholds are constants, the same for every mailbox
// and every evaluation fold. Decision.Score is the classifier's
// probability, or a fixed value for list and known-sender decisions;
// Decision.Reason is one line for the mailbox owner's rejection digest.
package decide
