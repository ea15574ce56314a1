"""A Maildir save in mailslot-lmtpd: the new name's directory fsync runs in another
thread while the delivery appends and fdatasyncs dovecot-uidlist
(storage/maildir.py PARALLEL_SYNC), so the two flushes overlap -- and the save
still returns only after both, and a failed directory fsync still fails it with
nothing left in new/."""

import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailslot.errors import StorageError
from mailslot.storage import index, maildir, open_storage
from tests.message_source import BytesSource

FLUSH = 0.05


@pytest.fixture
def flushes(monkeypatch):
    """os.fsync / fdatasync replaced by FLUSH-long fakes logging (kind, start, end);
    maildir.PARALLEL_SYNC set as the server sets it."""
    log, lock = [], threading.Lock()
    real_fstat = os.fstat

    def fake(kind):
        def flush(fd):
            start = time.monotonic()
            time.sleep(FLUSH)
            what = "dir" if stat.S_ISDIR(real_fstat(fd).st_mode) else kind
            with lock:
                log.append((what, start, time.monotonic()))
        return flush
    monkeypatch.setattr(os, "fsync", fake("file"))
    monkeypatch.setattr(os, "fdatasync", fake("datasync"))
    with ThreadPoolExecutor(4) as pool:
        monkeypatch.setattr(maildir, "PARALLEL_SYNC", pool.submit)
        yield log


def _storage(home):
    return open_storage(f"maildir:{home}/Maildir", user="t", home=str(home), hostname="h",
                        mail_fsync="optimized")


def _save(storage, n):
    return storage.save(("INBOX",), BytesSource(b"Subject: %d\n\nbody\n" % n,
                                               envelope_sender="s@example.org"))


def test_directory_and_uidlist_flushes_overlap(tmp_path, flushes):
    storage = _storage(tmp_path)
    _save(storage, 0)                       # makes the Maildir and its uidlist
    del flushes[:]
    began = time.monotonic()
    result = _save(storage, 1)
    took = time.monotonic() - began
    assert result.uid == 2
    kinds = [k for k, _, _ in flushes]
    assert sorted(kinds) == ["datasync", "dir", "file"], flushes
    (_, d0, d1), = [f for f in flushes if f[0] == "dir"]
    (_, u0, u1), = [f for f in flushes if f[0] == "datasync"]
    assert d0 < u1 and u0 < d1, flushes     # the two intervals overlap
    assert all(end <= began + took for _, _, end in flushes)   # none after the return
    with open(tmp_path / "Maildir" / index.UIDLIST_NAME) as f:
        assert [line.split()[0] for line in f.read().splitlines()[1:]] == ["1", "2"]


def test_failed_directory_fsync_still_fails_the_save(tmp_path, flushes, monkeypatch):
    storage = _storage(tmp_path)
    _save(storage, 0)
    real = os.fsync

    def failing(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            time.sleep(FLUSH)
            raise OSError(5, "Input/output error")
        real(fd)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StorageError, match="Input/output error"):
        _save(storage, 1)
    new = tmp_path / "Maildir" / "new"
    assert len(os.listdir(new)) == 1        # only the first message: nothing half-saved
    monkeypatch.setattr(os, "fsync", real)
    # The failed save's UID, if its record was written (it names a file that is
    # gone, as after an expunge), is never given to another message.
    assert _save(storage, 2).uid >= 2
    with open(tmp_path / "Maildir" / index.UIDLIST_NAME) as f:
        uids = [int(line.split()[0]) for line in f.read().splitlines()[1:]]
    assert uids == sorted(set(uids)) and uids[-1] >= 2


def test_a_declined_hand_off_syncs_in_turn(tmp_path, flushes, monkeypatch):
    """PARALLEL_SYNC may answer None (the server does while other deliveries are in
    flight): the save then fsyncs the directory itself, after the rename and before
    the uidlist's record -- three flushes in a row, none after the return -- and a
    failing one still fails the save with nothing left in new/."""
    storage = _storage(tmp_path)
    _save(storage, 0)
    asked = []
    monkeypatch.setattr(maildir, "PARALLEL_SYNC", lambda fn, *args: asked.append(fn))
    del flushes[:]
    began = time.monotonic()
    result = _save(storage, 1)
    took = time.monotonic() - began
    assert asked and result.uid == 2
    assert [k for k, _, _ in flushes] == ["file", "dir", "datasync"], flushes
    assert all(a[2] <= b[1] for a, b in zip(flushes, flushes[1:]))     # in turn
    assert all(end <= began + took for _, _, end in flushes)

    real = os.fsync

    def failing(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real(fd)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StorageError, match="Input/output error"):
        _save(storage, 2)
    assert len(os.listdir(tmp_path / "Maildir" / "new")) == 2
    monkeypatch.setattr(os, "fsync", real)
    with open(tmp_path / "Maildir" / index.UIDLIST_NAME) as f:
        assert [line.split()[0] for line in f.read().splitlines()[1:]] == ["1", "2"]
