#!/usr/bin/env python3
"""Delete messages by UIDL with Python's poplib: DELE each, then QUIT.

usage: poplib_dele.py HOST PORT USER PASSWORD UIDL...

It prints "deleted N" (the messages marked) and the server's QUIT reply.
"""
import poplib
import sys

host, port, user, password = sys.argv[1:5]
want = set(sys.argv[5:])
p = poplib.POP3(host, int(port), timeout=60)
p.user(user)
p.pass_(password)
resp, listing, _ = p.uidl()
n = 0
for entry in listing:
    num, uid = entry.decode().split()
    if uid in want:
        p.dele(int(num))
        n += 1
bye = p.quit().decode()
print("deleted", n, bye)
