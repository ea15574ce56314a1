"""Crash harness for mailslot-lmtpd: kill the daemon under load, nothing lost.

    python3 -m tests.reliability.lmtp_crash [--clients 8] [--messages 20]
            [--kills 4] [--signal KILL|TERM] [--format maildir|mbox] [--interval 0.4]

A private daemon (tests/lmtp/lmtpsite.py: its own uid, passwd-file users alice and
bob, a unix socket) takes transactions from --clients concurrent clients, each
sending --messages messages (1 KB to 300 KB, to alice, bob or both) as an MTA
does: a recipient without a 250 after the message is sent again on a new
connection until it gets one. Meanwhile the daemon is sent --signal (SIGKILL: a
crash; SIGTERM: a restart, which drains) --kills times at random moments and
started again. Afterwards every (recipient, message) that got a 250 is in that
recipient's mailbox, intact (its X-Digest), at least once and at most once per
attempt (a kill after the save and before the 250 makes the retry a second copy);
no partial message is visible; nothing was stored for a message never accepted.
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time

from tests.lmtp.lmtpsite import Client, Site
from tests.mbox.mboxtest import check_structure

DIGEST = re.compile(rb"^X-Digest: ([0-9a-f]{64})$", re.M)
MSGID = re.compile(rb"^Message-ID: <([^>]+)>$", re.M)
USERS = ("alice", "bob")


def make_message(rng, msgid):
    size = rng.choice([1_000, 5_000, 20_000, 100_000, 300_000])
    body = (f"{msgid} " + "lmtp crash body " * 5 + "\n").encode() * max(1, size // 100)
    return (f"From: s@example.org\nSubject: {msgid}\nMessage-ID: <{msgid}>\n"
            f"X-Digest: {hashlib.sha256(body).hexdigest()}\n\n").encode() + body


class Load:
    def __init__(self, site, rng, token):
        self.site, self.rng, self.token = site, rng, token
        self.lock = threading.Lock()
        self.acked = {}          # (user, msgid) -> digest
        self.attempts = {}       # (user, msgid) -> transactions tried
        self.errors = []
        self.stats = {"transactions": 0, "interrupted": 0, "retries": 0, "replies_250": 0}

    def client(self, c, messages):
        rng = random.Random(self.rng.random())
        for i in range(messages):
            msgid = f"l{c}-{i}.{self.token}@lmtp.test"
            users = rng.choice([["alice"], ["bob"], ["alice", "bob"]])
            data = make_message(rng, msgid)
            pending = list(users)
            for attempt in range(300):
                if not pending:
                    break
                with self.lock:
                    self.stats["transactions"] += 1
                    if attempt:
                        self.stats["retries"] += 1
                    for u in pending:
                        self.attempts[(u, msgid)] = self.attempts.get((u, msgid), 0) + 1
                try:
                    cl = Client.unix(self.site.socket)
                    try:
                        cl.hello()
                        rcpt, finals = cl.transaction("s@example.org",
                                                      [f"{u}@lmtp.test" for u in pending], data)
                        accepted = [u for u, r in zip(pending, rcpt) if r.startswith("250")]
                        for u, reply in zip(accepted, finals):
                            if reply.startswith("250"):
                                with self.lock:
                                    self.acked[(u, msgid)] = DIGEST.search(data).group(1)
                                    self.stats["replies_250"] += 1
                                pending.remove(u)
                    finally:
                        cl.close()
                except (OSError, EOFError, AssertionError):
                    with self.lock:
                        self.stats["interrupted"] += 1
                    time.sleep(0.05)
            else:
                with self.lock:
                    self.errors.append(f"{msgid}: never accepted for {pending}")


def stored(site, fmt):
    """{(user, msgid): [intact?]} of what a reader sees; raises on a partial message."""
    seen = {}
    for user in USERS:
        for raw in _raw_messages(site, fmt, user):
            head, _, body = raw.partition(b"\n\n")
            m, d = MSGID.search(head), DIGEST.search(head)
            if not m or not d:
                raise AssertionError(f"{user}: a message without its headers: {raw[:120]!r}")
            ok = hashlib.sha256(body).hexdigest().encode() == d.group(1)
            seen.setdefault((user, m.group(1).decode()), []).append(ok)
    return seen


def _raw_messages(site, fmt, user):
    if fmt == "maildir":
        for sub in ("new", "cur"):
            d = os.path.join(site.home(user), "Maildir", sub)
            for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
                with open(os.path.join(d, name), "rb") as f:
                    yield f.read()
        return
    import mailbox
    path = os.path.join(site.home(user), "mail", "inbox")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        check_structure(f.read())
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.keys():
            yield re.sub(rb"(?m)^>(>*From )", rb"\1", box.get_bytes(key))
    finally:
        box.close()


def run(clients=8, messages=20, kills=4, signum=signal.SIGKILL, fmt="maildir", seed=None,
        interval=0.4):
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    location = "maildir:~/Maildir" if fmt == "maildir" else "mbox:~/mail:INBOX=~/mail/inbox"
    site = Site.create(location=location, size_limit="10M")
    try:
        site.start()
        load = Load(site, rng, os.urandom(3).hex())
        threads = [threading.Thread(target=load.client, args=(c, messages))
                   for c in range(clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        done = 0
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, interval))
            if not any(t.is_alive() for t in threads):
                break
            site.proc.send_signal(signum)
            site.proc.wait(120)
            site.start()
            done += 1
        for t in threads:
            t.join(600)
        # One more delivery to each mbox after the last kill: the journal heals a
        # cut append on the next delivery (docs/reliability.md).
        if fmt == "mbox":
            cl = Client.unix(site.socket)
            cl.hello()
            cl.transaction("s@example.org", [f"{u}@lmtp.test" for u in USERS],
                           make_message(rng, f"final.{load.token}@lmtp.test"))
            cl.close()
        elapsed = time.monotonic() - start
        site.stop()
        seen = stored(site, fmt)
        problems = list(load.errors)
        for key, digest in load.acked.items():
            copies = seen.get(key, [])
            if not copies:
                problems.append(f"lost: {key}")
            elif not all(copies):
                problems.append(f"damaged: {key}")
            elif len(copies) > load.attempts[key]:
                problems.append(f"{key}: {len(copies)} copies in {load.attempts[key]} tries")
        for key, copies in seen.items():
            if key not in load.acked and not key[1].startswith("final."):
                if not all(copies):
                    problems.append(f"damaged and never accepted: {key}")
        return dict(load.stats, kills=done, signal=signal.Signals(signum).name, format=fmt,
                    clients=clients, messages=clients * messages,
                    acknowledged=len(load.acked),
                    lost=sum(1 for k in load.acked if not seen.get(k)),
                    extra_copies=sum(len(seen.get(k, [])) - 1 for k in load.acked
                                     if len(seen.get(k, [])) > 1),
                    problems=problems[:10], seed=seed, seconds=round(elapsed, 1))
    finally:
        site.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--format", choices=["maildir", "mbox"], default="maildir")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--interval", type=float, default=0.4,
                        help="the most seconds between two signals (default 0.4)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args.clients, args.messages, args.kills,
                 getattr(signal, "SIG" + args.signal), args.format, args.seed, args.interval)
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
