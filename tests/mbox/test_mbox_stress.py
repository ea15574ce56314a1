"""Eight concurrent deliverers x 200 messages into one mbox, with a reader holding
fcntl read locks the whole time: every message present exactly once and intact.

The reader does what an IMAP server does to read an mbox: takes an fcntl read lock,
reads, releases. Under its lock the mbox must always be whole (the writers' appends
are atomic with respect to the locks), so it checks the structure each time, holding
the lock a little while so that writers really wait for it.
"""

import json
import os
import subprocess
import sys
import time

from tests.mbox.mboxtest import verify_mbox
from tests.support import REPO

WRITERS = 8
MESSAGES = 200

READER = r"""
import fcntl, json, os, random, sys, time
sys.path.insert(0, REPO)
from tests.mbox.mboxtest import check_structure
path, stop = sys.argv[1], sys.argv[2]
rng = random.Random(7)
checks = errors = most = 0
while not os.path.exists(stop):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        time.sleep(0.01)
        continue
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        try:
            most = max(most, check_structure(data))
        except AssertionError as exc:
            errors += 1
            print("torn:", exc, file=sys.stderr, flush=True)
        time.sleep(rng.uniform(0, 0.01))        # writers wait for us meanwhile
        fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    checks += 1
    time.sleep(rng.uniform(0, 0.01))
print(json.dumps({"checks": checks, "errors": errors, "most": most}))
""".replace("REPO", repr(REPO))


def test_eight_writers_and_a_locking_reader(mbox_home):
    inbox = mbox_home.path("mail", "inbox")
    stop = os.path.join(mbox_home.base, "stop")
    reader = subprocess.Popen([sys.executable, "-c", READER, inbox, stop],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.monotonic()
    writers = [mbox_home.spawn(mbox_home.plan(count=MESSAGES, tag=f"w{w}",
                                              size=300 + (w * 997) % 6000))
               for w in range(WRITERS)]
    reports = {}
    for w, proc in enumerate(writers):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode(errors="replace")
        reports[w] = [json.loads(line) for line in out.decode().splitlines()]
    took = time.monotonic() - start
    open(stop, "w").close()
    out, err = reader.communicate(timeout=60)
    stats = json.loads(out.decode().splitlines()[-1])
    assert stats["errors"] == 0, err.decode(errors="replace")[:2000]
    assert stats["checks"] >= 20, stats

    for w, lines in reports.items():
        assert [r.get("error") for r in lines] == [None] * MESSAGES, lines[:3]
    found = verify_mbox(inbox)          # every message whole (digest), none twice
    want = {f"w{w}-{i}" for w in range(WRITERS) for i in range(MESSAGES)}
    assert set(found) == want
    # Each writer's messages are in its own order, at the offsets it reported.
    offsets = {r["id"]: r["offset"] for lines in reports.values() for r in lines}
    for w in range(WRITERS):
        mine = [offsets[f"w{w}-{i}"] for i in range(MESSAGES)]
        assert mine == sorted(mine)
    assert len(set(offsets.values())) == WRITERS * MESSAGES
    assert not os.path.exists(inbox + ".lock")
    print(f"{WRITERS * MESSAGES} deliveries in {took:.1f} s; reader: {stats}")
