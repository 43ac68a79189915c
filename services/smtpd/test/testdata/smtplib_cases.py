#!/usr/bin/env python3
"""Protocol cases for smtpd driven by Python's smtplib (run by edge_test.go).

usage: smtplib_cases.py HOST PORT TOKEN

Prints one JSON object a line: {"case": NAME, ...}. Recipients: bob@,
carol@ and dave@twinmx.test exist; nobody@twinmx.test does not.
"""
import json
import smtplib
import ssl
import sys

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
FROM = "py@sender.test"


def out(case, **kw):
    kw["case"] = case
    print(json.dumps(kw), flush=True)


def msg(case, to):
    return ("From: %s\r\nTo: %s\r\nSubject: %s-%s\r\n\r\nsmtplib case %s\r\n"
            % (FROM, ", ".join(to), token, case, case)).encode()


def connect():
    s = smtplib.SMTP(host, port, local_hostname="py.sender.test", timeout=30)
    s.ehlo()
    return s


# SIZE declared over the advertised limit: 552 at MAIL (RFC 1870).
s = connect()
limit = int(s.esmtp_features.get("size", "0") or 0)
code, text = s.mail(FROM, ["SIZE=%d" % (limit + 1)])
out("size-declared", limit=limit, code=code, text=text.decode(errors="replace"))
s.quit()

# RSET forgets the envelope: only carol gets the mail.
s = connect()
s.mail(FROM)
s.rcpt("bob@twinmx.test")
code, text = s.rset()
out("rset", code=code)
s.mail(FROM)
s.rcpt("carol@twinmx.test")
code, text = s.data(msg("rset", ["carol@twinmx.test"]))
out("rset-data", code=code, text=text.decode(errors="replace"))
s.quit()

# Several recipients, one unknown: sendmail reports the refused one and
# delivers to the others.
s = connect()
to = ["bob@twinmx.test", "carol@twinmx.test", "dave@twinmx.test", "nobody@twinmx.test"]
try:
    refused = s.sendmail(FROM, to, msg("multi", to))
    out("multi", refused={k: [v[0], v[1].decode(errors="replace")] for k, v in refused.items()})
except smtplib.SMTPException as e:
    out("multi", error=repr(e))
s.quit()

# STARTTLS, if offered, then a mail over TLS.
s = connect()
if s.has_extn("starttls"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    code, _ = s.starttls(context=ctx)
    s.ehlo()
    try:
        refused = s.sendmail(FROM, ["dave@twinmx.test"], msg("tls", ["dave@twinmx.test"]))
        out("starttls", code=code, version=s.sock.version(), refused=len(refused))
    except smtplib.SMTPException as e:
        out("starttls", code=code, error=repr(e))
else:
    out("starttls", offered=False)
s.quit()
