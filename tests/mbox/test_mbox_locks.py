"""mbox locks with Dovecot's rules: each method honoured, stale dotlocks, timeouts.

Other processes hold the locks (a small Python holder, a sleeping process whose pid
a dotlock names); the deliverer runs as an unprivileged user with short timeouts.
"""

import fcntl
import grp
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.mbox.mboxtest import verify_mbox

HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
kind = sys.argv[2]
if kind == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
elif kind == "read":
    fcntl.lockf(fd, fcntl.LOCK_SH)
else:
    fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(path, kind, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, kind, str(seconds)],
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"locked\n"
    return proc


def first_delivery(mbox_home):
    code, results, err = mbox_home.run(mbox_home.plan(count=1, tag="first"))
    assert code == 0, err
    return mbox_home.path("mail", "inbox")


def deliver(mbox_home, tag, **settings):
    start = time.monotonic()
    code, results, err = mbox_home.run(mbox_home.plan(count=1, tag=tag, settings=settings))
    assert code == 0, err
    return results[0], time.monotonic() - start


def plant_dotlock(inbox, content, age=0):
    lock = inbox + ".lock"
    with open(lock, "w") as f:
        f.write(content)
    when = time.time() - age
    os.utime(lock, (when, when))
    os.utime(inbox, (when, when))
    return lock


def test_dotlock_content_is_dovecots(mbox_home):
    inbox = first_delivery(mbox_home)
    # A big message keeps the locks held long enough to look at them.
    proc = mbox_home.spawn(mbox_home.plan(count=1, tag="x", size=16 * 1024 * 1024))
    until = time.monotonic() + 60
    content = None
    while not content:
        assert time.monotonic() < until and proc.poll() is None
        try:
            content = open(inbox + ".lock").read()
        except FileNotFoundError:
            time.sleep(0.0002)
    assert content == f"{proc.pid}:{socket.gethostname()}"
    proc.communicate(timeout=60)
    assert proc.returncode == 0 and not os.path.exists(inbox + ".lock")


def test_live_dotlock_is_respected_until_the_timeout(mbox_home):
    inbox = first_delivery(mbox_home)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        lock = plant_dotlock(inbox, f"{sleeper.pid}:{socket.gethostname()}", age=3600)
        result, took = deliver(mbox_home, "late", mbox_lock_timeout=2,
                               mbox_dotlock_change_timeout=1)
        assert "Timeout while waiting for lock" in result["error"]
        assert 1.5 < took < 20
        assert open(lock).read() == f"{sleeper.pid}:{socket.gethostname()}"
        assert list(verify_mbox(inbox)) == ["first-0"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dotlock_of_a_dead_process_is_broken_at_once(mbox_home):
    inbox = first_delivery(mbox_home)
    sleeper = subprocess.Popen(["true"])
    sleeper.wait()                      # a pid that no longer runs
    plant_dotlock(inbox, f"{sleeper.pid}:{socket.gethostname()}", age=5)
    result, took = deliver(mbox_home, "next", mbox_lock_timeout=30)
    assert "offset" in result and took < 10
    assert not os.path.exists(inbox + ".lock")


@pytest.mark.parametrize("fcntl_held", [False, True])
def test_old_dotlock_without_a_pid_is_stale_unless_fcntl_is_held(mbox_home, fcntl_held):
    """Dovecot's dotlock callback: an untouched lock is stale only if its holder does
    not hold the next lock (fcntl) either."""
    inbox = first_delivery(mbox_home)
    lock = plant_dotlock(inbox, "1:another.host.example", age=3600)
    holder = hold(inbox, "fcntl", 30) if fcntl_held else None
    try:
        result, _ = deliver(mbox_home, "next", mbox_lock_timeout=3,
                            mbox_dotlock_change_timeout=1)
    finally:
        if holder:
            holder.kill()
    if fcntl_held:
        assert "Timeout" in result["error"] and os.path.exists(lock)
    else:
        assert "offset" in result and not os.path.exists(lock)


@pytest.mark.parametrize("methods,held,blocks", [
    ("dotlock fcntl", "read", True),     # a reader's fcntl read lock holds writers
    ("dotlock fcntl", "flock", False),   # flock is another lock: not ours to wait for
    ("flock", "flock", True),
    ("flock", "fcntl", False),
    ("lockf", "fcntl", True),            # on Linux lockf(3) is an fcntl lock
    ("dotlock", "fcntl", False),
])
def test_each_method_waits_for_its_own_kind(mbox_home, methods, held, blocks):
    inbox = first_delivery(mbox_home)
    reads = "fcntl" if "fcntl" in methods else methods.split()[-1]
    holder = hold(inbox, held, 1.5)
    try:
        result, took = deliver(mbox_home, "next", mbox_write_locks=methods,
                               mbox_read_locks=reads, mbox_lock_timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert "offset" in result, result
    assert (took >= 1.2) == blocks, took
    assert "next-0" in verify_mbox(inbox)


def test_lock_timeout_on_a_held_fcntl_lock_releases_the_dotlock(mbox_home):
    inbox = first_delivery(mbox_home)
    holder = hold(inbox, "fcntl", 30)
    try:
        result, took = deliver(mbox_home, "late", mbox_lock_timeout=2)
    finally:
        holder.kill()
    assert "Timeout while waiting for lock" in result["error"] and took < 20
    assert not os.path.exists(inbox + ".lock")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a directory the user cannot write")
@pytest.mark.parametrize("methods", ["dotlock_try fcntl", "dotlock fcntl"])
def test_unwritable_spool_directory(mbox_home, methods):
    """Without mail_privileged_group: dotlock_try goes on without a dotlock (Dovecot),
    dotlock fails and says which setting would help."""
    spool = os.path.join(mbox_home.base, "spool")
    os.mkdir(spool)
    os.chown(spool, 0, grp.getgrnam("mail").gr_gid)     # root:mail, as /var/mail
    os.chmod(spool, 0o2775)
    inbox = os.path.join(spool, "user")
    with open(inbox, "wb"):
        pass
    os.chown(inbox, mbox_home.uid, mbox_home.gid)
    code, results, err = mbox_home.run(mbox_home.plan(
        location=f"mbox:~/mail:INBOX={inbox}", settings={"mbox_write_locks": methods}))
    assert code == 0, err
    if methods.startswith("dotlock_try"):
        assert "offset" in results[0]
        assert len(verify_mbox(inbox)) == 1
    else:
        assert "set mail_privileged_group=mail" in results[0]["error"]
        assert os.path.getsize(inbox) == 0
    assert os.listdir(spool) == ["user"]


def test_fcntl_reader_and_writer_interleave_without_tearing(mbox_home):
    """A reader taking fcntl read locks sees only whole mboxes (short version; the
    stress test runs eight writers)."""
    inbox = first_delivery(mbox_home)
    proc = mbox_home.spawn(mbox_home.plan(count=30, size=30_000, tag="w"))
    checks = 0
    while proc.poll() is None:
        fd = os.open(inbox, os.O_RDONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH)
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        assert data.endswith(b"\n\n") and data.startswith(b"From ")
        checks += 1
        time.sleep(0.002)
    assert proc.returncode == 0 and checks > 3
    assert len(verify_mbox(inbox)) == 31
