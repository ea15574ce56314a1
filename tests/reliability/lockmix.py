"""The mbox lock mix of issue 21.3: mailslot and dovecot-lda writers on one mbox.

    python3 -m tests.reliability.lockmix [--mailslot 8] [--lda 4] [--messages 25]
                                         [--locks "fcntl dotlock"]

Each writer delivers its messages one process at a time (the pipe path starts a
process per message, so does dovecot-lda), all writers at once, into one mbox of a
private Debian Dovecot (tests/dovecot_env.py). A delivery's wait is its wall time
less the median wall time of the same program delivering alone (measured first,
the same way): what it spent waiting for the others. Prints one JSON object: the
p50/p99/max waits of each side, the ratio of the p99s, and the message counts
(every delivery must be in the mbox exactly once: Dovecot's doveadm counts them).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from tests.dovecot_env import DovecotEnv
from tests.support import REPO

LOCATION = "mbox:~/mail:INBOX=~/mail/inbox"
SAVE_ONE = r"""
import os, sys
sys.path.insert(0, %r)
from mailslot.storage import open_storage
from tests.message_source import BytesSource
home, locks, tag = sys.argv[1:4]
storage = open_storage(%r, user="mstest", home=home, hostname=os.uname().nodename,
                       settings={"mbox_write_locks": locks})
body = ("Subject: %%s\n\n" %% tag + "line of the message body\n" * 200).encode()
storage.save(("INBOX",), BytesSource(body, envelope_sender="s@example.org"))
""" % (REPO, LOCATION)


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Mix:
    def __init__(self, env, locks):
        self.env, self.locks = env, locks
        self.lock = threading.Lock()
        self.failures = []

    def mailslot(self, tag):
        code = f"import sys; sys.path.insert(0, {os.path.join(REPO, 'pyside')!r})\n" + SAVE_ONE
        argv = self.env.user_argv(["/usr/bin/python3", "-I", "-c", code, self.env.home,
                                   self.locks, tag])
        return self._timed(argv, None)

    def lda(self, tag):
        argv = self.env.user_argv(["/usr/lib/dovecot/dovecot-lda", "-c", self.env.conf])
        body = (f"Subject: {tag}\n\n" + "line of the message body\n" * 200).encode()
        return self._timed(argv, body)

    def _timed(self, argv, data):
        start = time.monotonic()
        proc = subprocess.run(argv, input=data, capture_output=True, cwd=self.env.base)
        took = time.monotonic() - start
        if proc.returncode != 0:
            with self.lock:
                self.failures.append((argv[-1], proc.returncode, proc.stderr[-500:]))
        return took


def run(mailslot=8, lda=4, messages=25, locks="fcntl dotlock", solo=5):
    env = DovecotEnv.create(mail_location=LOCATION, separator="/")
    try:
        mix = Mix(env, locks)
        # The uncontended cost of one delivery of each program.
        base_ms = statistics.median(mix.mailslot(f"solo-m{i}") for i in range(solo))
        base_lda = statistics.median(mix.lda(f"solo-d{i}") for i in range(solo))
        waits = {"mailslot": [], "dovecot-lda": []}

        def writer(kind, w):
            for i in range(messages):
                if kind == "mailslot":
                    took = mix.mailslot(f"m{w}-{i}") - base_ms
                else:
                    took = mix.lda(f"d{w}-{i}") - base_lda
                with mix.lock:
                    waits[kind].append(max(0.0, took))

        threads = [threading.Thread(target=writer, args=("mailslot", w)) for w in range(mailslot)]
        threads += [threading.Thread(target=writer, args=("dovecot-lda", w)) for w in range(lda)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        rows = env.doveadm_rows("fetch", "hdr.subject", "mailbox", "INBOX")
        subjects = [r["hdr.subject"] for r in rows]
        expected = ([f"m{w}-{i}" for w in range(mailslot) for i in range(messages)]
                    + [f"d{w}-{i}" for w in range(lda) for i in range(messages)])
        result = {"locks": locks, "mailslot_writers": mailslot, "lda_writers": lda,
                  "messages_per_writer": messages, "elapsed_s": round(elapsed, 1),
                  "solo_s": {"mailslot": round(base_ms, 3), "dovecot-lda": round(base_lda, 3)},
                  "failures": len(mix.failures),
                  "missing": len(set(expected) - set(subjects)),
                  "duplicates": len(subjects) - len(set(subjects))}
        for kind, values in waits.items():
            result[kind] = {"p50": round(percentile(values, 0.5), 3),
                            "p99": round(percentile(values, 0.99), 3),
                            "max": round(max(values, default=0.0), 3), "n": len(values)}
        lda_p99 = result["dovecot-lda"]["p99"]
        result["p99_ratio"] = round(result["mailslot"]["p99"] / lda_p99, 2) if lda_p99 else None
        result["log_problems"] = env.log_problems()[:5]
        return result
    finally:
        env.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailslot", type=int, default=8)
    parser.add_argument("--lda", type=int, default=4)
    parser.add_argument("--messages", type=int, default=25)
    parser.add_argument("--locks", default="fcntl dotlock")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.mailslot, args.lda, args.messages, args.locks), indent=1))


if __name__ == "__main__":
    sys.exit(main())
