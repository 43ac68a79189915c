#!/usr/bin/env python3
"""soak.py: steady mixed load on a running local twinmx (deploy/run-local.sh)
for a bounded time, sampling each process's memory, threads, descriptors and
goroutines, then checking that every mail answered 250 is readable at both
sites. Started by deploy/bench/soak.sh; see there.

Load (each loop bounded by the deadline and by MAX_MAILS):
  - senders: smtplib to MX A and MX B in turn, ham from the corpus with a
    fresh Message-ID each (so every mail is new), some sessions dropped
    mid-DATA on purpose (the server must forget them);
  - IMAP readers at A and B: SELECT INBOX, FETCH the newest mails' bodies,
    STORE flags, a short IDLE, some connections dropped mid-FETCH;
  - POP3 readers at A and B: UIDL and RETR of a few mails (no DELE, so the
    final check can find every mail);
  - with SOAK_KILL_EVERY=N (seconds, default 0: off), chaos: every N s one
    process of the system, chosen at random, is killed with SIGKILL and
    started again with the same command line after up to SOAK_KILL_DOWN
    seconds (default 3), the way a supervisor would (SPEC §11, scenario 5).
Output: one line per sample, then a summary with the growth of each
figure from the first sample after the warm-up to the last, and the
check's result. Exit status 1 if a mail answered 250 is missing at a site
or is in a mailbox twice.
"""
import atexit
import imaplib
import os
import poplib
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request

RUN = os.environ["SOAK_RUN"]
DURATION = float(os.environ.get("SOAK_SECONDS", "600"))
WARMUP = float(os.environ.get("SOAK_WARMUP", "60"))
EVERY = float(os.environ.get("SOAK_EVERY", "15"))
MAX_MAILS = int(os.environ.get("SOAK_MAX_MAILS", "200000"))
KILL_EVERY = float(os.environ.get("SOAK_KILL_EVERY", "0"))
KILL_DOWN = float(os.environ.get("SOAK_KILL_DOWN", "3"))
CORPUS = os.environ.get("SOAK_CORPUS", "../shared/corpus/spamassassin-train.tar.gz")
RCPT, USER, PASSWORD = "demo@twinmx.test", "demo", "demo-password"
SMTP = [("127.0.0.1", 2525), ("127.0.0.1", 2526)]
IMAP = [("127.0.0.1", 1143), ("127.0.0.1", 1144)]
POP3 = [("127.0.0.1", 1110), ("127.0.0.1", 1111)]
# Metrics ports of deploy/run-local.sh, by process label.
METRICS = {
    "dbd-a": 7311, "dbd-b": 7312, "smtpd-a": 7321, "smtpd-b": 7322, "backupd": 7331,
    "spamd-a": 7341, "spamd-b": 7342, "pop3d-a": 7351, "pop3d-b": 7352,
    "imapd-a": 7361, "imapd-b": 7362, "smsd-a": 7371, "smsd-b": 7372,
}

deadline = time.monotonic() + DURATION
lock = threading.Lock()
stats = {"sent": 0, "250": 0, "451": 0, "550": 0, "other": 0, "dropped": 0,
         "imap_sessions": 0, "imap_fetched": 0, "imap_dropped": 0, "pop_sessions": 0,
         "pop_retr": 0, "errors": 0, "kills": 0}
accepted = []  # Message-IDs answered 250
errors = []


def count(key, n=1):
    with lock:
        stats[key] += n


def note_error(where, err):
    with lock:
        stats["errors"] += 1
        if len(errors) < 50:
            errors.append("%s: %r" % (where, err))


def load_ham():
    mails = []
    with tarfile.open(CORPUS) as tar:
        for m in tar:
            if m.isfile() and "/ham/" in "/" + m.name and m.name.endswith(".eml"):
                data = tar.extractfile(m).read()
                if data.startswith(b"From "):
                    data = data[data.index(b"\n") + 1 :]  # the mbox separator line
                head, sep, body = data.partition(b"\n\n")
                if not sep or len(data) > 200_000:
                    continue
                # Drop the corpus's Message-ID and trace fields (with
                # their continuation lines); soak adds its own Message-ID
                # so that each sent mail is new.
                keep, lines = True, []
                for l in head.split(b"\n"):
                    if not l.startswith((b" ", b"\t")):
                        keep = not re.match(rb"(?i)(message-id|received|delivered-to|return-path):", l)
                    if keep:
                        lines.append(l)
                mails.append((b"\n".join(lines), body))
    return mails


def sender(idx, mails):
    rng = random.Random(idx)
    n = 0
    while time.monotonic() < deadline:
        with lock:
            if stats["sent"] >= MAX_MAILS:
                return
        host, port = SMTP[n % 2]
        n += 1
        try:
            s = smtplib.SMTP(host, port, timeout=60)
            s.ehlo("soak.example.net")
            for _ in range(rng.randint(1, 5)):
                head, body = rng.choice(mails)
                mid = "<soak-%d-%d-%d@soak.example.net>" % (idx, n, rng.getrandbits(48))
                msg = b"Message-ID: " + mid.encode() + b"\r\n" + head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")
                if rng.random() < 0.03:
                    # Drop the session in the middle of DATA.
                    s.mail("soak@example.net")
                    s.rcpt(RCPT)
                    s.putcmd("data")
                    s.getreply()
                    s.sock.sendall(msg[: len(msg) // 2])
                    s.sock.close()
                    count("dropped")
                    break
                count("sent")
                for attempt in range(20):
                    try:
                        s.sendmail("soak@example.net", [RCPT], msg)
                        count("250")
                        with lock:
                            accepted.append(mid)
                        break
                    except smtplib.SMTPDataError as e:
                        if e.smtp_code == 451 and time.monotonic() < deadline:
                            count("451")
                            time.sleep(1)
                            continue
                        count("550" if e.smtp_code == 550 else "other")
                        break
                    except smtplib.SMTPRecipientsRefused as e:
                        count("other")
                        note_error("rcpt", e)
                        break
            else:
                s.quit()
        except (OSError, smtplib.SMTPException) as e:
            note_error("smtp %d" % port, e)
            time.sleep(0.5)


def select(c):
    """SELECT INBOX; its message count. A refusal (dbd restarting: NO
    [UNAVAILABLE]) is an error like a dropped connection."""
    typ, data = c.select("INBOX")
    if typ != "OK":
        raise imaplib.IMAP4.error("SELECT: %s %r" % (typ, data))
    return int(data[0])


def imap_reader(idx):
    rng = random.Random(1000 + idx)
    host, port = IMAP[idx % 2]
    while time.monotonic() < deadline:
        try:
            c = imaplib.IMAP4(host, port, timeout=60)
            c.login(USER, PASSWORD)
            count("imap_sessions")
            n = select(c)
            for _ in range(rng.randint(1, 6)):
                if time.monotonic() >= deadline:
                    break
                if n > 0:
                    lo = max(1, n - rng.randint(1, 20))
                    if rng.random() < 0.05:
                        # Ask for bodies and drop the connection unread.
                        c.send(("a%d FETCH %d:%d BODY.PEEK[]\r\n" % (rng.getrandbits(16), lo, n)).encode())
                        c.shutdown()
                        count("imap_dropped")
                        c = None
                        break
                    typ, data = c.fetch("%d:%d" % (lo, n), "(UID FLAGS BODY.PEEK[])")
                    count("imap_fetched", sum(1 for d in data if isinstance(d, tuple)))
                    flag = rng.choice(["\\Seen", "\\Flagged", "$soak"])
                    op = rng.choice(["+FLAGS", "-FLAGS"])
                    c.store("%d:%d" % (lo, n), op, flag)
                c.noop()
                n = select(c)
                time.sleep(rng.uniform(0.1, 1.0))
            if c is not None:
                c.logout()
        except (OSError, imaplib.IMAP4.error) as e:
            note_error("imap %d" % port, e)
            time.sleep(0.5)


def pop_reader(idx):
    rng = random.Random(2000 + idx)
    host, port = POP3[idx % 2]
    while time.monotonic() < deadline:
        try:
            p = poplib.POP3(host, port, timeout=60)
            p.user(USER)
            p.pass_(PASSWORD)
            count("pop_sessions")
            n = len(p.uidl()[1])
            for i in range(max(1, n - rng.randint(1, 10)), n + 1):
                if n == 0:
                    break
                p.retr(i)
                count("pop_retr")
            p.quit()
        except (OSError, poplib.error_proto) as e:
            note_error("pop3 %d" % port, e)
        time.sleep(rng.uniform(0.5, 2.0))


def processes():
    """label -> pid for the processes run-local.sh started under RUN."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        if len(argv) < 2 or RUN.encode() not in b" ".join(argv):
            continue
        name = os.path.basename(argv[0].decode())
        args = b" ".join(argv).decode(errors="replace")
        if name not in ("dbd", "smtpd", "backupd", "spamd", "pop3d", "imapd", "smsd") or len(argv) > 1 and argv[1] in (b"push", b"train", b"rule"):
            continue
        if name == "backupd":
            out["backupd"] = int(pid)
            continue
        site = "a" if re.search(r"dbd-a|:7301|--site a\b|--site A\b", args) else "b"
        out["%s-%s" % (name, site)] = int(pid)
    return out


class Chaos:
    """Kills processes of the system at random and starts them again.

    A restarted process is this script's child; its command line, working
    folder and log file are those of the process it replaces, so the
    system looks as run-local.sh left it. pids is shared with the sampler
    and updated under lock."""

    def __init__(self, pids):
        self.pids = pids
        self.children = []
        self.kills = []  # (time, label) of each kill, for the summary

    def run(self, rng):
        while time.monotonic() + KILL_EVERY < deadline:
            time.sleep(KILL_EVERY)
            with lock:
                label = rng.choice(sorted(self.pids))
                pid = self.pids[label]
            try:
                argv = open("/proc/%d/cmdline" % pid, "rb").read().rstrip(b"\0").split(b"\0")
                cwd = os.readlink("/proc/%d/cwd" % pid)
                os.kill(pid, signal.SIGKILL)
            except OSError as e:
                note_error("chaos %s" % label, e)
                continue
            count("kills")
            self.kills.append((time.monotonic(), label))
            time.sleep(rng.uniform(0, KILL_DOWN))
            self.start(label, argv, cwd)

    def start(self, label, argv, cwd):
        log = open(os.path.join(RUN, label + ".log"), "ab")
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.children.append(p)
        with lock:
            self.pids[label] = p.pid

    def stop(self):
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.children:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def sample(pids):
    row = {}
    with lock:
        pids = dict(pids)
    for label, pid in pids.items():
        rss = threads = fds = None
        try:
            for line in open("/proc/%d/status" % pid):
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) // 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            pass
        gor = None
        port = METRICS.get(label)
        if port:
            try:
                text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
                m = re.search(r"^go_goroutines (\d+)", text, re.M)
                gor = int(m.group(1)) if m else None
            except OSError:
                pass
        row[label] = (rss, threads, fds, gor)
    return row


def check(ids):
    """For each site, the Message-IDs of ids missing from INBOX, and those
    in it more than once."""
    missing, twice = {}, {}
    for host, port in IMAP:
        c = imaplib.IMAP4(host, port, timeout=120)
        c.login(USER, PASSWORD)
        c.select("INBOX", readonly=True)
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        have = {}
        for d in data:
            if isinstance(d, tuple):
                m = re.search(rb"<[^>]+>", d[1])
                if m:
                    k = m.group(0).decode()
                    have[k] = have.get(k, 0) + 1
        c.logout()
        site = "%s:%d" % (host, port)
        missing[site] = [i for i in ids if i not in have]
        twice[site] = [k for k, n in have.items() if n > 1 and k.startswith("<soak-")]
    return missing, twice


def main():
    mails = load_ham()
    print("soak: %d ham mails to send from, %.0f s of load, warm-up %.0f s, a sample every %.0f s"
          % (len(mails), DURATION, WARMUP, EVERY), flush=True)
    pids = processes()
    print("soak: processes: " + ", ".join("%s=%d" % kv for kv in sorted(pids.items())), flush=True)
    workers = [threading.Thread(target=sender, args=(i, mails)) for i in range(4)]
    workers += [threading.Thread(target=imap_reader, args=(i,)) for i in range(4)]
    workers += [threading.Thread(target=pop_reader, args=(i,)) for i in range(2)]
    chaos = None
    if KILL_EVERY > 0:
        chaos = Chaos(pids)
        atexit.register(chaos.stop)  # the restarted processes are ours to stop
        workers.append(threading.Thread(target=chaos.run, args=(random.Random(3000),)))
        print("soak: chaos: a random process killed (SIGKILL) every %.0f s, down up to %.0f s" % (KILL_EVERY, KILL_DOWN), flush=True)
    for w in workers:
        w.daemon = True
        w.start()
    start = time.monotonic()
    samples = []
    while time.monotonic() < deadline:
        time.sleep(EVERY)
        t = time.monotonic() - start
        row = sample(pids)
        samples.append((t, row))
        with lock:
            s = dict(stats)
        print("t=%4.0fs sent %d (250 %d, 451 %d) imap fetched %d pop retr %d errors %d | %s" % (
            t, s["sent"], s["250"], s["451"], s["imap_fetched"], s["pop_retr"], s["errors"],
            " ".join("%s %sM/%sg/%sfd" % (k, v[0], v[3], v[2]) for k, v in sorted(row.items()))), flush=True)
    for w in workers:
        w.join(timeout=120)
    stuck = [w for w in workers if w.is_alive()]
    # Let replication and the filter settle, then read both sites.
    time.sleep(10)
    idle = sample(pids)
    base = next((r for t, r in samples if t >= WARMUP), samples[0][1])
    last = samples[-1][1]
    print("\nsoak summary (%.0f s): %s" % (samples[-1][0], ", ".join("%s %d" % kv for kv in stats.items())))
    print("%-10s %-22s %-18s %-14s %-14s" % ("process", "RSS MiB warm/end/idle", "goroutines", "threads", "fds"))
    for label in sorted(last):
        b, e, i = base.get(label, (None,) * 4), last[label], idle.get(label, (None,) * 4)
        fig = lambda k: "%s/%s/%s" % (b[k], e[k], i[k])
        print("%-10s %-22s %-18s %-14s %-14s" % (label, fig(0), fig(3), fig(1), fig(2)))
    for e in errors[:20]:
        print("error:", e)
    if chaos:
        print("chaos: %d kills: %s" % (len(chaos.kills), ", ".join("t=%.0fs %s" % (t - start, l) for t, l in chaos.kills)))
    # A mail answered 250 is on both sites at once, but its mailbox entry
    # at the other site needs the acknowledgement replicated, which waits
    # for backupd if chaos just restarted it: give that a bounded time.
    settle = time.monotonic() + (120 if chaos else 0)
    while True:
        missing, twice = check(accepted)
        if not any(missing.values()) or time.monotonic() >= settle:
            break
        time.sleep(5)
    bad = False
    for site, ids in missing.items():
        print("check %s: %d of %d mails answered 250 missing%s; %d twice%s" % (
            site, len(ids), len(accepted), (": " + " ".join(ids[:5])) if ids else "",
            len(twice[site]), (": " + " ".join(twice[site][:5])) if twice[site] else ""))
        bad = bad or bool(ids) or bool(twice[site])
    if stuck:
        print("soak: %d load threads did not stop in time" % len(stuck))
        bad = True
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    socket.setdefaulttimeout(120)
    main()
