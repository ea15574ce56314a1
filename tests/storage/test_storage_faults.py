"""Faults after the point of no return (issues 12.9, 21.2, 21.4, 21.5, 21.6).

- dovecot-uidlist hit by RLIMIT_FSIZE (a real `ulimit -f` in a child process) or a
  failing write: the partial record is truncated back, the message stays saved in
  new/ without a UID, and the save says so in its warnings;
- a close() that fails after the commit (the uidlist fd; the mbox file and its
  journal) is a warning, not a failure (75 would make the MTA deliver twice), and
  no lock is left behind;
- a dotlock is born whole: a SIGKILL while its pid:host is being written leaves no
  lock (the next taker gets it at once, not after the 120 s stale timeout).
"""

import errno
import json
import os
import resource
import signal

import pytest

from mailslot.storage import index, locking, open_storage
from tests.storage.sources import TEST_HOST, BytesSource, maildir_storage, message


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def uidlist(home):
    return home / "Maildir" / "dovecot-uidlist"


def in_child(func):
    """Run func() in a forked child; return what it returned (JSON) or raise."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                out = {"ok": func()}
            except BaseException as exc:  # noqa: BLE001 -- reported to the parent
                out = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    assert data, f"child died with status {status}"
    return json.loads(data)


@pytest.mark.parametrize("room", [0, 7])
def test_uidlist_append_cut_by_rlimit_fsize_is_truncated_back(home, room):
    """ulimit -f just above (room=7: a short write) or at (room=0: EFBIG) the
    uidlist's size, with the message itself well under the limit."""
    st = maildir_storage(home)
    for i in range(60):                     # a uidlist far longer than the message
        st.save(("INBOX",), BytesSource(message(i)))
    before = uidlist(home).read_bytes()
    assert len(before) > 2 * len(message(99))
    limit = len(before) + room

    def save_limited():
        # Why in a child: RLIMIT_FSIZE cannot be raised back by an unprivileged
        # process, and the test runner must keep writing files.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # as Python's default
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        r = maildir_storage(home).save(("INBOX",), BytesSource(message(99)))
        return {"uid": r.uid, "uid_error": r.uid_error, "path": r.path,
                "warnings": list(r.warnings)}

    out = in_child(save_limited)
    assert "ok" in out, out
    r = out["ok"]
    assert r["uid"] is None and "dovecot-uidlist" in r["uid_error"], r
    assert "truncated back" in r["uid_error"], r
    assert any("saved without a UID" in w for w in r["warnings"]), r
    # The list is exactly what it was: no fragment for Dovecot to glue a record to.
    assert uidlist(home).read_bytes() == before
    assert not (home / "Maildir" / "dovecot-uidlist.lock").exists()
    with open(r["path"], "rb") as f:
        assert f.read() == message(99)
    # The next save (no limit) numbers on from the list as it was.
    nxt = maildir_storage(home).save(("INBOX",), BytesSource(message(100)))
    assert nxt.uid == 61
    assert uidlist(home).read_bytes().startswith(before)


def test_uidlist_write_error_after_a_partial_write_truncates(home, monkeypatch):
    """A write that returns short then fails (ENOSPC at a block boundary)."""
    st = maildir_storage(home)
    st.save(("INBOX",), BytesSource(message(1)))
    before = uidlist(home).read_bytes()
    real_pwrite = os.pwrite
    calls = []

    def pwrite(fd, data, offset):          # the append writes at the end it saw
        if bytes(data[:3]) == b"2 :" and fd not in calls:      # the uidlist record
            calls.append(fd)
            return real_pwrite(fd, bytes(data[:5]), offset)  # a block's worth, then full
        if fd in calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(index.os, "pwrite", pwrite)
    r = st.save(("INBOX",), BytesSource(message(2)))
    monkeypatch.undo()
    assert calls, "the uidlist append was not reached"
    assert r.uid is None and "No space left" in r.uid_error
    assert uidlist(home).read_bytes() == before
    assert os.path.exists(r.path)


def test_uidlist_close_error_after_commit_is_a_warning(home, monkeypatch):
    st = maildir_storage(home)
    st.save(("INBOX",), BytesSource(message(1)))

    def failing_close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(index.UidlistState, "close", failing_close)
    r = st.save(("INBOX",), BytesSource(message(2)))
    assert r.uid == 2 and os.path.exists(r.path)
    assert any("close failed after the save" in w and "dovecot-uidlist" in w
               for w in r.warnings), r.warnings
    assert not (home / "Maildir" / "dovecot-uidlist.lock").exists()


@pytest.mark.parametrize("what", ["mbox", "journal"])
def test_mbox_close_error_after_commit_is_a_warning(home, monkeypatch, what):
    from mailslot.storage import mbox_journal, mbox_lock
    st = open_storage("mbox:~/mail:INBOX=~/mail/inbox", user="t", home=str(home),
                      hostname=TEST_HOST)
    st.save(("INBOX",), BytesSource(message(1)))
    cls = mbox_lock.MboxLocks if what == "mbox" else mbox_journal.MboxJournal
    attr = "mbox_fd" if what == "mbox" else "fd"
    real_close = cls.close

    def failing_close(self):
        had = getattr(self, attr) is not None
        real_close(self)
        if had:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cls, "close", failing_close)
    r = st.save(("INBOX",), BytesSource(message(2)))
    monkeypatch.undo()
    assert any("closing failed after the save" in w for w in r.warnings), r.warnings
    data = (home / "mail" / "inbox").read_bytes()
    assert data.count(b"\nFrom ") + data.startswith(b"From ") == 2
    assert not [n for n in os.listdir(home / "mail") if n.endswith(".lock")]


def test_dotlock_is_born_whole_across_a_sigkill(tmp_path):
    """Killed while writing pid:host: the next taker must not wait for a stale lock."""
    dir_fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        pid = os.fork()
        if pid == 0:
            real_write = os.write

            def write(fd, data):
                if bytes(data).startswith(f"{os.getpid()}:".encode()):
                    os.kill(os.getpid(), signal.SIGKILL)      # between create and write
                return real_write(fd, data)
            locking.os.write = write
            try:
                locking.acquire_dotlock(dir_fd, "dovecot-uidlist", hostname="h",
                                        stale_timeout=120)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert not (tmp_path / "dovecot-uidlist.lock").exists()
        lock = locking.acquire_dotlock(dir_fd, "dovecot-uidlist", hostname="h",
                                       stale_timeout=120, timeout=0)
        assert lock is not None
        assert (tmp_path / "dovecot-uidlist.lock").read_text() == f"{os.getpid()}:h"
        lock.release()
    finally:
        os.close(dir_fd)


def test_dotlock_has_its_mode_from_birth(tmp_path):
    dir_fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    old = os.umask(0o077)
    try:
        lock = locking.acquire_dotlock(dir_fd, "f", hostname="h", stale_timeout=30,
                                       mode=0o660)
        assert os.stat(tmp_path / "f.lock").st_mode & 0o777 == 0o660
        assert [n for n in os.listdir(tmp_path)] == ["f.lock"]      # no temp file left
        lock.release()
    finally:
        os.umask(old)
        os.close(dir_fd)


def test_release_removes_the_lock_even_when_its_close_fails(tmp_path, monkeypatch):
    dir_fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        lock = locking.acquire_dotlock(dir_fd, "subscriptions", hostname="h",
                                       stale_timeout=30, write_pid=False, keep_open=True)
        real_close = os.close

        def close(fd):
            real_close(fd)
            if fd == lock_fd:
                raise OSError(errno.EIO, "Input/output error")
        lock_fd = lock.fd
        monkeypatch.setattr(locking.os, "close", close)
        with pytest.raises(OSError):
            lock.release()
        monkeypatch.undo()
        assert not (tmp_path / "subscriptions.lock").exists()
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize("fmt", ["maildir:~/Maildir", "mbox:~/mail:INBOX=~/mail/inbox"])
def test_a_stray_oserror_before_the_commit_names_the_mailbox(home, monkeypatch, fmt):
    """Issue 21.6: "internal error: OSError: [Errno 5] ..." said nothing of where."""
    from mailslot.errors import StorageError
    st = open_storage(fmt, user="t", home=str(home), hostname=TEST_HOST)
    st.save(("INBOX",), BytesSource(message(1)))
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")
    if fmt.startswith("maildir"):
        monkeypatch.setattr(st, "_open_subdirs", broken)
    else:
        monkeypatch.setattr(st, "_open_journal", broken)
    with pytest.raises(StorageError) as info:
        st.save(("INBOX",), BytesSource(message(2)))
    text = str(info.value)
    # Maildir names the mailbox's directory, mbox the mailbox (its file is not
    # known yet at every step).
    assert text.startswith(("saving into INBOX:", f"saving into {home}/Maildir:")), text
    assert "Input/output error" in text
