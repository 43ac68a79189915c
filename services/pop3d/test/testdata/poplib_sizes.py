#!/usr/bin/env python3
"""Compare STAT and LIST sizes with the octets RETR delivers, by poplib.

usage: poplib_sizes.py HOST PORT USER PASSWORD

poplib counts the octets of a multi-line reply after un-stuffing, CRLFs
included: what RFC 1939 §5 says a size is. It prints "ok N" for N mails
whose sizes match, or one line per mismatch.
"""
import poplib
import sys

host, port, user, password = sys.argv[1:5]
p = poplib.POP3(host, int(port), timeout=60)
p.user(user)
p.pass_(password)
count, total = p.stat()
_, listing, _ = p.list()
sizes = {int(n): int(s) for n, s in (e.decode().split() for e in listing)}
bad = []
sent = 0
for n, size in sorted(sizes.items()):
    resp, lines, octets = p.retr(n)
    sent += octets
    if octets != size:
        bad.append("mail %d: LIST %d, RETR sent %d (%s)" % (n, size, octets, resp.decode()))
    if resp.decode() != "+OK %d octets" % octets:
        bad.append("mail %d: RETR reply %s, sent %d" % (n, resp.decode(), octets))
if count != len(sizes) or total != sent:
    bad.append("STAT %d %d, LIST %d mails, RETR sent %d" % (count, total, len(sizes), sent))
p.quit()
print("\n".join(bad) if bad else "ok %d" % len(sizes))
