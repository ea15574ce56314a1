"""A dotlock left by a power cut (found by tests/reliability/fusecrash.py's "names"
state): the lock's name reached the disk and its content did not, so the next
mbox delivery after the reboot found an empty inbox.lock and waited its stale
timeout (120 s) -- and a lock naming this host keeps a pid that a new process may
have been given since. A lock last changed (ctime) before the system booted is
broken at once when it is empty or names this host; one naming another host is
not (NFS: that host may hold it)."""

import os
import time

import pytest

from mailslot.storage import locking
from mailslot.storage.locking import acquire_dotlock

HOST = "powerhost"
STALE = 120


@pytest.fixture
def dir_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def make_lock(tmp_path, content):
    path = tmp_path / "inbox.lock"
    path.write_bytes(content)
    old = time.time() - 10          # mtime only: the rule reads the ctime
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("content,before_boot,broken", [
    (b"", True, True),                       # cut: the name without its content
    (f"1:{HOST}".encode(), True, True),       # pid 1 lives, but it is not the locker
    (b"1:otherhost", True, False),           # another host's: only by time
    (b"", False, False),                     # made in this boot: waits as before
    (f"1:{HOST}".encode(), False, False),     # a live local pid: never stale
])
def test_a_lock_from_before_the_boot(tmp_path, dir_fd, monkeypatch, content,
                                     before_boot, broken):
    path = make_lock(tmp_path, content)
    # The clock injected: the machine "booted" after the lock was made, or long before.
    booted = int(os.stat(path).st_ctime) + 1 if before_boot else int(time.time()) - 3600
    monkeypatch.setattr(locking, "boot_time", lambda: booted)
    started = time.monotonic()
    lock = acquire_dotlock(dir_fd, "inbox", hostname=HOST, stale_timeout=STALE,
                           timeout=0, sleep_on_override=False)
    assert time.monotonic() - started < 5
    if broken:
        assert lock is not None
        assert path.read_text() == f"{os.getpid()}:{HOST}"
        lock.release()
    else:
        assert lock is None
        assert path.read_bytes() == content
