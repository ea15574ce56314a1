"""The duplicate database: expiry, bounds, concurrent claims, SIGKILL at any point."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.duplicates import HEADER, DuplicateDB  # noqa: E402


class Clock:
    def __init__(self, now=1_800_000_000):
        self.now = now

    def __call__(self):
        return self.now


def test_claim_once_per_period_and_again_after(tmp_path):
    clock = Clock()
    db = DuplicateDB(str(tmp_path / "dupes"), clock=clock)
    assert db.claim("vacation\0h\0a@example.org", 3600) is True
    assert db.claim("vacation\0h\0a@example.org", 3600) is False
    assert db.check("vacation\0h\0a@example.org")
    clock.now += 3599
    assert db.claim("vacation\0h\0a@example.org", 3600) is False
    clock.now += 1
    assert not db.check("vacation\0h\0a@example.org")
    assert db.claim("vacation\0h\0a@example.org", 3600) is True


def test_forget_and_mark(tmp_path):
    db = DuplicateDB(str(tmp_path / "dupes"), clock=Clock())
    db.mark(b"\x01\x02", 60)
    assert db.check(b"\x01\x02") and not db.check(b"\x01\x03")
    db.forget(b"\x01\x02")
    assert not db.check(b"\x01\x02")


def test_bounded_keeps_the_longest_lived(tmp_path):
    clock = Clock()
    db = DuplicateDB(str(tmp_path / "dupes"), clock=clock, max_entries=10)
    for i in range(25):
        db.mark(f"k{i}", 1000 + i)
    kept = [i for i in range(25) if db.check(f"k{i}")]
    assert kept == list(range(15, 25))
    assert os.path.getsize(tmp_path / "dupes") == len(HEADER) + 10 * 44


def test_expired_entries_are_dropped_from_the_file(tmp_path):
    clock = Clock()
    db = DuplicateDB(str(tmp_path / "dupes"), clock=clock)
    db.mark("old", 10)
    clock.now += 11
    db.mark("new", 10)
    assert (tmp_path / "dupes").read_bytes().count(b"\n") == 2   # header + one


@pytest.mark.parametrize("damage", [
    b"garbage\n", b"\x00\x00\x00", b"mailslot-duplicates 1\nzz 12\n",
    b"mailslot-duplicates 1\n" + b"a" * 32 + b" 99999999999999999\n",
    b"mailslot-duplicates 1\n" + b"0" * 31,          # cut mid-line
])
def test_a_damaged_file_loads_and_is_repaired(tmp_path, damage):
    path = tmp_path / "dupes"
    path.write_bytes(damage)
    db = DuplicateDB(str(path), clock=Clock())
    assert not db.check("x")
    assert db.claim("x", 60) and not db.claim("x", 60)
    assert path.read_bytes().startswith(HEADER)


def test_a_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me\n")
    os.symlink(target, tmp_path / "dupes")
    db = DuplicateDB(str(tmp_path / "dupes"), clock=Clock())
    with pytest.raises(Exception):
        db.check("x")
    assert target.read_bytes() == b"keep me\n"


def _claimer(path, key, out):
    db = DuplicateDB(path)
    out.put(db.claim(key, 3600))


def test_concurrent_claims_one_wins(tmp_path):
    path = str(tmp_path / "dupes")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(path, "same-key", out)) for _ in range(12)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join()
    assert results.count(True) == 1 and results.count(False) == 11


def test_concurrent_claims_from_threads_of_one_process_one_wins(tmp_path):
    """mailslot-lmtpd delivers in threads: fcntl alone cannot keep them apart."""
    import threading
    path = str(tmp_path / "dupes")
    results = []
    start = threading.Barrier(16)

    def claim():
        start.wait()
        results.append(DuplicateDB(path).claim("same-key", 3600))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and results.count(False) == 15



def test_sending_records_after_the_send_and_never_after_a_failed_one(tmp_path):
    """duplicates.sending (redirect): nothing on the disk while the send runs (a
    crash then makes the retry send again, never lose the forward); recorded when
    the block ends; a send that raised leaves nothing (the retry sends)."""
    path = str(tmp_path / "dupes")
    db = DuplicateDB(path, clock=Clock())
    with pytest.raises(OSError):
        with db.sending("fwd", 3600) as fresh:
            assert fresh
            raise OSError("the MTA refused")
    assert not db.check("fwd")
    with db.sending("fwd", 3600) as fresh:
        assert fresh and not db.check("fwd")     # not yet: the send is under way
    assert db.check("fwd")
    with db.sending("fwd", 3600) as fresh:
        assert not fresh


def test_concurrent_sendings_from_threads_send_once(tmp_path):
    """The lock is held over the send: of 8 deliveries of one message at once,
    one forwards."""
    import threading
    path = str(tmp_path / "dupes")
    sent = []
    start = threading.Barrier(8)

    def deliver():
        start.wait()
        with DuplicateDB(path).sending("same-key", 3600) as fresh:
            if fresh:
                time.sleep(0.05)        # the MTA takes a while
                sent.append(1)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 1

WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from mailslot.duplicates import DuplicateDB
db = DuplicateDB(sys.argv[2], max_entries=300)
i = 0
while True:
    db.mark("key-%d" % i, 100000)
    i += 1
"""


def test_sigkill_at_any_point_leaves_a_file_that_loads(tmp_path):
    """SIGKILL trials: kill a busy writer at varied moments; the file always loads,
    holds only whole entries, and only ever grows by whole writes."""
    path = str(tmp_path / "dupes")
    db = DuplicateDB(path)
    seen_max = 0
    for trial in range(40):
        proc = subprocess.Popen([sys.executable, "-c", WRITER,
                                 os.path.join(REPO, "pyside"), path])
        time.sleep(0.05 + (trial % 7) * 0.013)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = open(path, "rb").read() if os.path.exists(path) else HEADER
        assert data.startswith(HEADER), data[:60]
        lines = data[len(HEADER):].split(b"\n")
        assert lines[-1] == b""
        for line in lines[:-1]:
            name, _, expiry = line.partition(b" ")
            assert len(name) == 32 and expiry.isdigit(), line
        seen_max = max(seen_max, len(lines) - 1)
        # The database still works after every kill.
        assert db.claim(f"after-{trial}", 60) is True
    assert seen_max > 0
