"""Group commit (storage/dirs.py, sync_directory): one directory fsync shared by the threads that
commit into that directory at the same moment, never weakening "durable on return".
"""

import os
import threading
import time

import pytest

from mailslot.storage import dirs as dirsync


@pytest.fixture
def slow_fsync(monkeypatch):
    """os.fsync replaced by a 30 ms fake that logs (fd's inode, start, end)."""
    log, lock = [], threading.Lock()
    real_fstat = os.fstat

    def fake(fd):
        start = time.monotonic()
        time.sleep(0.03)
        with lock:
            log.append((real_fstat(fd).st_ino, start, time.monotonic()))
    monkeypatch.setattr(dirsync.os, "fsync", fake)
    return log


def run_callers(dirs, per_dir, stagger=0.002):
    """Threads calling sync_directory; returns [(inode, called, returned)]."""
    calls, lock = [], threading.Lock()

    def caller(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            called = time.monotonic()
            dirsync.sync_directory(fd)
            with lock:
                calls.append((os.fstat(fd).st_ino, called, time.monotonic()))
        finally:
            os.close(fd)

    threads = []
    for i in range(per_dir):
        for path in dirs:
            threads.append(threading.Thread(target=caller, args=(path,)))
            threads[-1].start()
        time.sleep(stagger)
    for t in threads:
        t.join()
    return calls


def test_concurrent_syncs_share_fsyncs_and_each_is_covered(tmp_path, slow_fsync):
    calls = run_callers([str(tmp_path)], 24)
    assert len(calls) == 24
    assert len(slow_fsync) < 12            # shared: far fewer fsyncs than callers
    for ino, called, returned in calls:
        # Covered: an fsync of this directory began after the call and ended before
        # it returned.
        assert any(f_ino == ino and called <= start and end <= returned
                   for f_ino, start, end in slow_fsync), (called, returned)
    assert dirsync._registry == {}


def test_an_fsync_of_another_directory_never_counts(tmp_path, slow_fsync):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    calls = run_callers([str(a), str(b)], 8)
    for ino, called, returned in calls:
        assert any(f_ino == ino and called <= start and end <= returned
                   for f_ino, start, end in slow_fsync)
    assert {ino for ino, _, _ in slow_fsync} == {a.stat().st_ino, b.stat().st_ino}


def test_a_failing_fsync_raises_in_its_thread_and_others_sync_again(tmp_path, monkeypatch):
    made = []

    def failing_once(fd):
        made.append(fd)
        if len(made) == 1:
            time.sleep(0.03)
            raise OSError(5, "Input/output error")
    monkeypatch.setattr(dirsync.os, "fsync", failing_once)
    errors, done = [], []

    def caller():
        fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            dirsync.sync_directory(fd)
            done.append(fd)
        except OSError as exc:
            errors.append(exc)
        finally:
            os.close(fd)

    first = threading.Thread(target=caller)
    first.start()
    time.sleep(0.01)
    later = [threading.Thread(target=caller) for _ in range(3)]
    for t in later:
        t.start()
    for t in [first] + later:
        t.join()
    assert len(errors) == 1 and len(done) == 3
    assert len(made) >= 2                  # the others did not count the failed one
