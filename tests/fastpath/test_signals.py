"""The MTA kills the front (SIGKILL, SIGTERM) at random points of a hand-off.

Per trial the message is written to the front's stdin up to a random cut, the
front is killed after a random pause, and only then is stdin closed (as an MTA
closes the pipe of a child it has reaped). Whatever the moment:

- a message cut short is never filed: the worker was stopped (SIGTERM on the
  connection's hang-up) before it could see the end of its input;
- a whole message is filed whole or not at all, never in part;
- the worker is gone shortly after: nothing lingers.

Trials per signal: MAILSLOT_FASTPATH_TRIALS (default 12), seeded from
MAILSLOT_FASTPATH_SEED (default: random, printed on failure).
"""

import os
import random
import signal
import subprocess
import time

import pytest

from tests.fastpath.conftest import wait_for
from tests.fastpath.helpers import Box
from tests.support import needs_root

pytestmark = needs_root
TRIALS = int(os.environ.get("MAILSLOT_FASTPATH_TRIALS", "12"))
BODY = b"".join(b"line %06d of a message that takes a while to arrive\n" % i
                for i in range(4000))
MESSAGE = b"From: a@example.org\nSubject: slow\nMessage-ID: <slow@example.org>\n\n" + BODY


@pytest.fixture
def box(mail_users, front):
    b = Box(mail_users[0], front)
    yield b
    b.close()


def stored(box):
    out = []
    for sub in ("new", "cur"):
        path = os.path.join(box.maildir, sub)
        if os.path.isdir(path):
            out += [open(os.path.join(path, n), "rb").read() for n in os.listdir(path)]
    return out


def clear(box):
    for sub in ("new", "cur", "tmp"):
        path = os.path.join(box.maildir, sub)
        if os.path.isdir(path):
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_killed_front_files_whole_or_nothing(box, start_server, signum):
    seed = int(os.environ.get("MAILSLOT_FASTPATH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = start_server(box.user)
    outcomes = {"cut-nothing": 0, "whole-filed": 0, "whole-nothing": 0}
    for trial in range(TRIALS):
        clear(box)
        cut = rng.choice([0, rng.randrange(len(MESSAGE)), len(MESSAGE)])
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={box.user.pw_uid}", f"--regid={box.user.pw_gid}",
             "--init-groups", "--"] + box.argv(),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd="/", env={"PATH": "/usr/bin:/bin", "USER": box.user.pw_name,
                          "HOME": box.user.pw_dir})
        pipe = os.fstat(proc.stdin.fileno()).st_ino    # finds its worker after the front is gone
        try:
            for start in range(0, cut, 65536):
                proc.stdin.write(MESSAGE[start:min(cut, start + 65536)])
                proc.stdin.flush()
            if cut == len(MESSAGE):
                proc.stdin.close()
        except BrokenPipeError:
            pass
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signum)
        code = proc.wait(30)
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.stderr.close()
        where = f"seed {seed} trial {trial} cut {cut} exit {code}"
        assert wait_for(lambda: not server.workers_reading(pipe), 15), \
            f"a worker lingers: {where}"
        files = stored(box)
        assert len(files) <= 1, where
        if cut < len(MESSAGE):
            assert files == [], f"a message cut short was filed: {where}"
            outcomes["cut-nothing"] += 1
        elif files:
            assert files == [MESSAGE], f"filed in part: {where}"
            outcomes["whole-filed"] += 1
        else:
            outcomes["whole-nothing"] += 1
    print(outcomes)
