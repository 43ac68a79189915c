#!/usr/bin/env python3
"""Download mail with Python's poplib, leaving it on the server.

usage: poplib_fetch.py HOST PORT USER PASSWORD OUTDIR SEENFILE [LIMIT]

Every message whose UIDL is not in SEENFILE is retrieved with RETR and
written to OUTDIR/<uidl>.eml as poplib returns it: its lines joined with
CRLF, plus a final CRLF. The UIDL is appended to SEENFILE (and flushed)
after the file is written, as a "leave on server" client does. At most
LIMIT messages are downloaded. It prints "downloaded N".
"""
import os
import poplib
import sys

poplib._MAXLINE = 1 << 24  # corpus mails have lines longer than 2048

host, port, user, password, outdir, seenfile = sys.argv[1:7]
limit = int(sys.argv[7]) if len(sys.argv) > 7 else None
seen = set()
if os.path.exists(seenfile):
    with open(seenfile) as f:
        seen = set(line.strip() for line in f if line.strip())
p = poplib.POP3(host, int(port), timeout=60)
caps = p.capa()
assert "UIDL" in caps and "TOP" in caps, caps
p.user(user)
p.pass_(password)
resp, listing, _ = p.uidl()
n = 0
with open(seenfile, "a") as seenf:
    for entry in listing:
        num, uid = entry.decode().split()
        if uid in seen:
            continue
        if limit is not None and n >= limit:
            break
        resp, lines, octets = p.retr(int(num))
        data = b"\r\n".join(lines) + b"\r\n"
        path = os.path.join(outdir, uid + ".eml")
        assert not os.path.exists(path), "downloaded twice: " + uid
        with open(path, "wb") as f:
            f.write(data)
        seenf.write(uid + "\n")
        seenf.flush()
        n += 1
p.quit()
print("downloaded", n)
