"""8 concurrent deliverers keep maildirsize equal to the real usage.

Eight real processes (each the delivery core, resolving the recipient and
delivering one message after another, as an LMTP server would) deliver into one
Maildir at once, while a ninth keeps forcing recalculations: it removes the file
(as a write error does) and runs `quota recalc`'s code. Afterwards the file's sums
must be exactly what the Maildir holds (counted from the files), and Dovecot's
`doveadm quota get` must agree with mailslot's.
"""

import os
import subprocess
import time

from tests.dovecot_env import PYSIDE
from tests.quota.qenv import message

DELIVERERS = 8
PER_DELIVERER = 60
OLD_MAIL = 4000

DELIVERER = r"""
import sys
sys.path.insert(0, sys.argv[1])
conf, user, path, count = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
from mailslot.message import read_message
from mailslot.recipient import load_base_settings, resolve
from mailslot.deliver import DeliveryContext, deliver
import os
base = load_base_settings(conf, [])
for i in range(count):
    fd = os.open(path, os.O_RDONLY)
    message = read_message(fd)
    rcpt = resolve(base, user)
    context = DeliveryContext(rcpt.settings, rcpt.user,
                              {"from": "s@example.org", "to": user, "orig_to": user},
                              sender=None, extra=rcpt.extra)
    assert deliver(context, message)
    os.close(fd)
"""

HAMMER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
conf, user, maildir, stop = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
from mailslot.storage.quota_tool import open_user_quota
quota = open_user_quota(conf, user)
rounds = 0
while not os.path.exists(stop):
    try:
        os.unlink(os.path.join(maildir, "maildirsize"))
    except FileNotFoundError:
        pass
    time.sleep(0.002)
    quota.recalculate()
    rounds += 1
    if rounds == 1:
        open(stop + ".started", "w").close()
    time.sleep(0.005)
print(rounds)
"""


def test_eight_deliverers_and_recalculations(quota_env):
    q = quota_env(rules={"quota_rule": "*:storage=1G"})
    sizes = [1000 + 37 * i for i in range(DELIVERERS)]
    paths = []
    for i, size in enumerate(sizes):
        path = os.path.join(q.env.base, f"msg{i}")
        with open(path, "wb") as f:
            f.write(message(size, msgid=f"<c{i}@example.org>"))
        os.chmod(path, 0o644)
        paths.append(path)
    assert q.mailslot_lda(message(500)).returncode == 0       # the Maildir exists
    # Old mail, so that counting takes a while: a wide window for a race.
    cur = os.path.join(q.maildir, "cur")
    for i in range(OLD_MAIL):
        with open(os.path.join(cur, f"{i}.M1P1.old,S=100,W=102:2,S"), "wb") as f:
            f.write(b"x" * 100)
    q.env.give(cur)
    stop = os.path.join(q.home, "stop")
    hammer = subprocess.Popen(q.env.user_argv(["/usr/bin/python3", "-I", "-c", HAMMER,
                                               PYSIDE, q.conf, q.user, q.maildir, stop]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(stop + ".started") and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = [subprocess.Popen(q.env.user_argv(["/usr/bin/python3", "-I", "-c", DELIVERER,
                                                 PYSIDE, q.conf, q.user, path,
                                                 str(PER_DELIVERER)]),
                                stderr=subprocess.PIPE) for path in paths]
    # Recalculations while the first half of the mail arrives, then none: what
    # the file says at the end is the last recalculation plus the deltas
    # appended around and after it.
    new = os.path.join(q.maildir, "new")
    deadline = time.monotonic() + 120
    while len(os.listdir(new)) < 1 + DELIVERERS * PER_DELIVERER // 2 and \
            time.monotonic() < deadline:
        time.sleep(0.005)
    open(stop, "w").close()
    out, err = hammer.communicate(timeout=300)
    assert hammer.returncode == 0, err.decode()
    assert int(out) >= 2
    assert any(worker.poll() is None for worker in workers)
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()

    real_bytes = 500 + PER_DELIVERER * sum(sizes) + 100 * OLD_MAIL
    real_count = 1 + PER_DELIVERER * DELIVERERS + OLD_MAIL
    text = q.maildirsize()
    assert text is not None
    lines = text.split("\n")[1:-1]
    total = [sum(int(line.split()[k]) for line in lines) for k in (0, 1)]
    assert total == [real_bytes, real_count], text
    rows = q.mailslot_quota()
    assert rows[0][2] == str((real_bytes + 1023) // 1024)
    assert rows[1][2] == str(real_count)
    assert rows == q.doveadm_quota()
