"""mailslot-lmtpd's reusable dotlock files (storage/lock_files.py): a lock is a new
link to a file of the process's own, born whole, fresh, exclusive, and removed as
any other; the ordinary method wherever the pool cannot serve."""

import os
import time

import pytest

from mailslot.storage import locking
from mailslot.storage.lock_files import LockFilePool

HOST = "host.test"


@pytest.fixture
def pool(tmp_path, monkeypatch):
    made = LockFilePool(str(tmp_path))
    monkeypatch.setattr(locking, "LOCK_FILES", made)
    yield made
    made.close()


def mailbox(tmp_path, name="mbox"):
    path = tmp_path / name
    path.mkdir()
    return os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)


def take(dir_fd, mode=0o600):
    return locking.acquire_dotlock(dir_fd, "dovecot-uidlist", hostname=HOST,
                                   stale_timeout=120, timeout=0, mode=mode)


def pool_files(pool):
    return sorted(os.listdir(pool.path))


def test_a_lock_is_a_link_to_a_pool_file_and_the_file_is_reused(tmp_path, pool):
    box = mailbox(tmp_path)
    lock = take(box)
    st = os.stat("dovecot-uidlist.lock", dir_fd=box)
    [name] = pool_files(pool)
    assert os.stat(os.path.join(pool.path, name)).st_ino == st.st_ino
    assert st.st_nlink == 2 and (st.st_mode & 0o7777) == 0o600
    with open(f"/proc/self/fd/{box}/dovecot-uidlist.lock", "rb") as f:
        assert f.read() == f"{os.getpid()}:{HOST}".encode()
    assert lock.release() is True
    assert not os.path.exists(f"/proc/self/fd/{box}/dovecot-uidlist.lock")
    again = take(box)
    assert os.stat("dovecot-uidlist.lock", dir_fd=box).st_ino == st.st_ino
    again.release()
    assert pool_files(pool) == [name] and pool.links == 2


def test_a_reused_lock_looks_new_to_waiters(tmp_path, pool):
    """Stale rules read the lock's times: an hour-old file linked as is would be
    taken for a lock left behind (ours: our own pid; another host's: stale)."""
    box = mailbox(tmp_path)
    take(box).release()
    [name] = pool_files(pool)
    old = time.time() - 3600
    os.utime(os.path.join(pool.path, name), (old, old))
    lock = take(box)
    st = os.stat("dovecot-uidlist.lock", dir_fd=box)
    assert st.st_mtime > time.time() - 60
    lock.release()


def test_locks_held_at_once_have_their_own_files_and_stay_exclusive(tmp_path, pool):
    a, b = mailbox(tmp_path, "a"), mailbox(tmp_path, "b")
    lock_a, lock_b = take(a), take(b)
    assert len(pool_files(pool)) == 2
    assert take(a) is None                  # held: busy, whichever file we tried
    assert take(b) is None
    lock_a.release()
    lock_b.release()
    assert len(pool_files(pool)) == 2       # a busy lock is seen before any link
    assert all(os.stat(os.path.join(pool.path, n)).st_nlink == 1 for n in pool_files(pool))


def test_a_lock_someone_replaced_is_not_removed(tmp_path, pool):
    box = mailbox(tmp_path)
    lock = take(box)
    os.unlink("dovecot-uidlist.lock", dir_fd=box)       # broken as stale by another
    fd = os.open("dovecot-uidlist.lock", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=box)
    os.write(fd, b"1:elsewhere")
    os.close(fd)
    assert lock.release() is False
    with open(f"/proc/self/fd/{box}/dovecot-uidlist.lock", "rb") as f:
        assert f.read() == b"1:elsewhere"
    [name] = pool_files(pool)
    assert os.stat(os.path.join(pool.path, name)).st_nlink == 1   # free again


def test_a_file_still_linked_somewhere_is_never_reused(tmp_path, pool):
    """Reusing it would refresh the times of a lock we could not remove, keeping it
    alive for ever."""
    box, other = mailbox(tmp_path, "a"), mailbox(tmp_path, "b")
    lock = take(box)
    [name] = pool_files(pool)
    os.link("dovecot-uidlist.lock", "left-behind.lock", src_dir_fd=box, dst_dir_fd=other)
    lock.release()
    assert pool_files(pool) == []
    take(box).release()
    [new] = pool_files(pool)
    assert new != name


@pytest.mark.parametrize("mode", [0o660, 0o644])
def test_locks_readable_by_others_are_made_the_ordinary_way(tmp_path, pool, mode):
    box = mailbox(tmp_path)
    lock = take(box, mode)
    st = os.stat("dovecot-uidlist.lock", dir_fd=box)
    assert st.st_nlink == 1 and (st.st_mode & 0o7777) == mode
    assert pool_files(pool) == [] and pool.links == 0
    lock.release()


def test_another_filesystem_falls_back(tmp_path, monkeypatch):
    if os.stat("/dev/shm").st_dev == os.stat(str(tmp_path)).st_dev:
        pytest.skip("/dev/shm is on the same filesystem")
    made = LockFilePool("/dev/shm")
    monkeypatch.setattr(locking, "LOCK_FILES", made)
    try:
        box = mailbox(tmp_path)
        lock = take(box)
        assert lock is not None and made.links == 0
        assert os.stat("dovecot-uidlist.lock", dir_fd=box).st_nlink == 1
        lock.release()
        assert take(box) is not None
    finally:
        made.close()


def test_close_removes_the_files_and_the_directory(tmp_path, monkeypatch):
    made = LockFilePool(str(tmp_path))
    monkeypatch.setattr(locking, "LOCK_FILES", made)
    box = mailbox(tmp_path)
    take(box).release()
    assert len(os.listdir(made.path)) == 1
    made.close()
    assert not os.path.exists(made.path)


def test_a_lock_made_between_the_check_and_the_link_is_busy(tmp_path, pool):
    box = mailbox(tmp_path)
    state = locking._LockState(box, "dovecot-uidlist", "dovecot-uidlist.lock", HOST,
                               120, False)
    fd = os.open("dovecot-uidlist.lock", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=box)
    os.close(fd)
    assert pool.create(state, 0o600, True) is None
    assert state.on_release is None
    [name] = pool_files(pool)
    assert os.stat(os.path.join(pool.path, name)).st_nlink == 1
    os.unlink("dovecot-uidlist.lock", dir_fd=box)
    take(box).release()
    assert pool_files(pool) == [name]           # the same file, reused


def test_the_daemon_takes_uidlist_locks_from_its_pool_and_removes_it_at_exit():
    if os.geteuid() != 0:
        pytest.skip("runs the daemon as another uid (root needed)")
    from tests.lmtp.lmtpsite import Client, Site
    from mailslot.storage.index import read_uidlist
    site = Site.create()
    try:
        site.start()
        client = Client.unix(site.socket)
        client.hello()
        for i in range(3):
            _, finals = client.transaction("s@example.org", ["alice@lmtp.test"],
                                           b"Subject: %d\n\nbody\n" % i)
            assert finals == ["250 2.0.0 <alice@lmtp.test> Saved"]
        client.close()
        temp = os.path.join(site.top, "tmp")
        [pool_dir] = [n for n in os.listdir(temp) if n.startswith(".mailslot-locks.")]
        files = os.listdir(os.path.join(temp, pool_dir))
        assert len(files) == 1                  # one file served all three locks
        assert os.stat(os.path.join(temp, pool_dir, files[0])).st_nlink == 1
        maildir = os.path.join(site.home("alice"), "Maildir")
        assert not os.path.exists(os.path.join(maildir, "dovecot-uidlist.lock"))
        fd = os.open(maildir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _, records = read_uidlist(fd)
        finally:
            os.close(fd)
        assert [r[0] for r in records] == [1, 2, 3]
        site.stop()
        assert [n for n in os.listdir(temp) if n.startswith(".mailslot-locks.")] == []
    finally:
        site.cleanup()


def test_a_free_lock_is_linked_before_any_look_at_it(tmp_path, pool, monkeypatch):
    """The common case costs the link alone: no lstat of the lock before it (the
    link's EEXIST is the check), no dup() of the pool file's fd and no fstat() of
    it (its identity is known, its mode is the pool's, its mtime was just set)."""
    box = mailbox(tmp_path)
    take(box).release()                 # the pool now has a free file
    looks, dups, fstats = [], [], []
    real_look, real_dup, real_fstat = locking._LockState._lstat_lock, os.dup, os.fstat
    monkeypatch.setattr(locking._LockState, "_lstat_lock",
                        lambda self: looks.append(1) or real_look(self))
    monkeypatch.setattr(os, "dup", lambda fd: dups.append(fd) or real_dup(fd))
    monkeypatch.setattr(os, "fstat", lambda fd: fstats.append(fd) or real_fstat(fd))
    lock = take(box)
    assert lock is not None and looks == [] and dups == [] and fstats == []
    st = os.stat("dovecot-uidlist.lock", dir_fd=box)
    assert (lock.dev, lock.ino, lock.mtime) == (st.st_dev, st.st_ino, int(st.st_mtime))
    assert st.st_mode & 0o7777 == 0o600
    monkeypatch.setattr(os, "fstat", real_fstat)
    assert os.stat("dovecot-uidlist.lock", dir_fd=box).st_nlink == 2
    # Held: the next try is refused after its link failed, then the lock looked at.
    assert take(box) is None and looks == [1]
    assert lock.release() is True
    [name] = pool_files(pool)
    assert os.stat(os.path.join(pool.path, name)).st_nlink == 1
    assert take(box) is not None        # the lent fd was not closed by the lock


def test_a_stale_lock_is_still_broken_when_the_first_link_fails(tmp_path, pool):
    """The first try meets a lock left by a dead process: the stale rules still run
    after it (an old lock naming a dead pid of this host is broken) and the lock
    is ours."""
    import subprocess
    dead = subprocess.Popen(["true"])
    dead.wait()
    box = mailbox(tmp_path)
    take(box).release()
    fd = os.open("dovecot-uidlist.lock", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=box)
    os.write(fd, f"{dead.pid}:{HOST}".encode())
    os.close(fd)
    old = time.time() - 3600
    os.utime("dovecot-uidlist.lock", (old, old), dir_fd=box)
    lock = take(box)
    assert lock is not None
    st = os.stat("dovecot-uidlist.lock", dir_fd=box)
    assert st.st_nlink == 2 and st.st_mtime > time.time() - 60
    assert lock.release() is True


def test_keep_open_with_a_pool_file_gets_an_fd_of_its_own(tmp_path, pool):
    box = mailbox(tmp_path)
    lock = locking.acquire_dotlock(box, "dovecot-uidlist", hostname=HOST,
                                   stale_timeout=120, timeout=0, mode=0o600,
                                   keep_open=True)
    [entry] = [e for e in pool._free.get((0o600, HOST), [])] or [None]
    assert entry is None                 # in use, not free
    assert os.fstat(lock.fd).st_ino == os.stat("dovecot-uidlist.lock", dir_fd=box).st_ino
    assert lock.release() is True        # closes its own fd only
    [free] = pool._free[(0o600, HOST)]
    os.fstat(free.fd)                    # the pool's fd is still open
    assert take(box) is not None
