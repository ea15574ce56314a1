"""Dotlocks (mailslot.storage.locking): creation, release, replace, and Dovecot's stale rules."""

import os
import subprocess
import threading
import time

import pytest

from mailslot.storage.locking import _LockState, acquire_dotlock, read_lock_pid

HOST = "lockhost"
STALE = 120


@pytest.fixture
def dir_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("use_excl", [True, False], ids=["excl", "link"])
def test_acquire_release(tmp_path, dir_fd, use_excl):
    lock = acquire_dotlock(dir_fd, "file", hostname=HOST, stale_timeout=STALE,
                           use_excl=use_excl, mode=0o640)
    path = tmp_path / "file.lock"
    assert lock is not None
    assert path.read_text() == f"{os.getpid()}:{HOST}"
    assert path.stat().st_mode & 0o777 == 0o640
    assert acquire_dotlock(dir_fd, "file", hostname=HOST, stale_timeout=STALE,
                           use_excl=use_excl) is None
    assert lock.release() is True
    assert not path.exists()
    assert sorted(os.listdir(tmp_path)) == []      # no temp file left by the link method


def test_mode_is_exact_whatever_the_umask(tmp_path, dir_fd):
    old = os.umask(0o077)
    try:
        lock = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE, mode=0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "f.lock").stat().st_mode & 0o777 == 0o644
    lock.release()


def test_release_does_not_remove_someone_elses_lock(tmp_path, dir_fd):
    lock = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE)
    # Overridden by another process (ours is kept aside so its inode stays taken).
    os.rename(tmp_path / "f.lock", tmp_path / "ours")
    (tmp_path / "f.lock").write_text("999999:elsewhere")
    assert lock.release() is False
    assert (tmp_path / "f.lock").read_text() == "999999:elsewhere"


def test_replace_renames_the_new_content_into_place(tmp_path, dir_fd):
    (tmp_path / "f").write_text("old\n")
    lock = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=30,
                           write_pid=False, keep_open=True)
    os.write(lock.fd, b"new\n")
    assert lock.replace() is True
    assert (tmp_path / "f").read_text() == "new\n"
    assert not (tmp_path / "f.lock").exists()


def test_symlinked_lock_name_is_not_followed(tmp_path, dir_fd):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / "f.lock")
    assert acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE) is None
    assert victim.read_text() == "keep"


def test_waits_until_released(tmp_path, dir_fd):
    held = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE)
    timer = threading.Timer(0.8, held.release)
    timer.start()
    start = time.monotonic()
    lock = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE, timeout=10)
    timer.join()
    assert lock is not None and time.monotonic() - start >= 0.7
    lock.release()


def test_timeout_gives_up(tmp_path, dir_fd):
    held = acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE)
    start = time.monotonic()
    assert acquire_dotlock(dir_fd, "f", hostname=HOST, stale_timeout=STALE, timeout=1) is None
    assert 0.5 <= time.monotonic() - start < 5
    held.release()


@pytest.mark.parametrize("content,expected", [
    ("123:" + HOST, 123), ("123:" + HOST + "\n", 123), ("123:other", None),
    ("abc:" + HOST, None), ("0:" + HOST, None), ("", None), ("123", None),
])
def test_read_lock_pid(tmp_path, dir_fd, content, expected):
    (tmp_path / "f.lock").write_text(content)
    assert read_lock_pid(dir_fd, "f.lock", HOST) == expected


# The stale rules, with the clock moved forward instead of the lock's times moved
# back: a file's ctime cannot be set, and Dovecot looks at it.

def _state(dir_fd, stale=STALE):
    return _LockState(dir_fd, "f", "f.lock", HOST, stale, sleep_on_override=False)


def _plant(tmp_path, content, age=10):
    path = tmp_path / "f.lock"
    path.write_text(content)
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_absent_lock_may_be_created(dir_fd):
    assert _state(dir_fd).check(int(time.time())) is True


def test_fresh_lock_without_pid_is_respected(tmp_path, dir_fd):
    path = _plant(tmp_path, "", age=0)
    assert _state(dir_fd).check(int(time.time())) is False
    assert path.exists()


def test_lock_without_pid_goes_stale_after_the_timeout(tmp_path, dir_fd):
    path = _plant(tmp_path, "", age=0)
    now = int(time.time())
    assert _state(dir_fd).check(now + STALE - 1) is False
    assert path.exists()
    assert _state(dir_fd).check(now + STALE + 2) is True
    assert not path.exists()


def test_other_hosts_lock_goes_stale_only_by_time(tmp_path, dir_fd):
    path = _plant(tmp_path, f"{dead_pid()}:otherhost")
    now = int(time.time())
    assert _state(dir_fd).check(now) is False
    assert _state(dir_fd).check(now + STALE + 2) is True
    assert not path.exists()


def test_protected_file_activity_keeps_the_lock(tmp_path, dir_fd):
    _plant(tmp_path, "", age=0)
    state = _state(dir_fd)
    now = int(time.time())
    assert state.check(now) is False
    # The uidlist changes "later": it is seen when the lock looks stale.
    (tmp_path / "f").write_text("changed")
    future = now + STALE + 2
    t = future - 1
    os.utime(tmp_path / "f", (t, t))
    assert state.check(future) is False
    assert (tmp_path / "f.lock").exists()


def test_live_local_pid_is_never_stale(tmp_path, dir_fd):
    path = _plant(tmp_path, f"1:{HOST}", age=10)
    assert _state(dir_fd).check(int(time.time()) + 100 * STALE) is False
    assert path.exists()


def test_dead_local_pid_is_stale_at_once(tmp_path, dir_fd):
    path = _plant(tmp_path, f"{dead_pid()}:{HOST}", age=10)
    assert _state(dir_fd).check(int(time.time())) is True
    assert not path.exists()


def test_dead_pid_is_trusted_only_after_two_seconds(tmp_path, dir_fd):
    path = _plant(tmp_path, f"{dead_pid()}:{HOST}", age=0)
    assert _state(dir_fd).check(int(time.time())) is False
    assert path.exists()


def test_stale_timeout_zero_never_overrides(tmp_path, dir_fd):
    _plant(tmp_path, "", age=0)
    assert _state(dir_fd, stale=0).check(int(time.time()) + 10**6) is False
