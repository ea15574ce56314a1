"""mailslot-dotlock: a lock from before the system booted (rule 0 of its header).

A lock whose ctime is before the boot, and that is empty or names this host without
a live pid, is broken at once instead of after the change timeout: a power cut can
leave a lock born whole empty (its name reached the disk, its content did not).

The boot is moved, not waited for: the helper runs in a time namespace
(`unshare --time --boottime=-N`) whose CLOCK_BOOTTIME is about a second, so the boot
moment it computes (realtime minus CLOCK_BOOTTIME) falls after a lock planted two
seconds earlier. The lock is younger than the test build's change timeout (3 s) and
STALE_PID_CHECK_SECS (2 s), so without rule 0 every such lock is held; each run is
a trylock (one look), as the setgid binary, as the test user.
"""
import math
import os
import socket
import subprocess
import time

import pytest

from tests.dotlock.dotlocktest import ALICE, CHANGE_TIMEOUT, assert_refused

HOST = socket.gethostname()
# How long the planted lock ages before the helper looks: past nothing but the boot.
LOCK_AGE = 1.8
assert LOCK_AGE < CHANGE_TIMEOUT - 1


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


@pytest.fixture(scope="module", autouse=True)
def time_namespaces_work():
    proc = subprocess.run(["unshare", "--time", "--boottime=-1", "cat", "/proc/uptime"],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip("no time namespaces here: " + proc.stderr.decode(errors="replace"))


def run_booted_since(dotlock, seconds_ago, helper=None, env=None, groups=None):
    """trylock ALICE's spool with the computed boot about seconds_ago in the past."""
    up = uptime()
    # CLOCK_BOOTTIME in the namespace: up - offset, between seconds_ago - 1 and
    # seconds_ago (kept positive: the kernel refuses an offset that makes it negative).
    offset = math.ceil(up) - seconds_ago
    assert 0 < offset < up
    entry = dotlock.accounts[ALICE]
    grouping = ["--init-groups"] if groups is None else [
        "--groups=" + ",".join(str(g) for g in groups)]
    cmd = ["unshare", "--time", f"--boottime=-{offset}",
           "setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}"] + grouping \
        + [str(helper or dotlock.helper), "trylock", str(dotlock.spool_file(ALICE))]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, timeout=60,
                          env=env or {"PATH": "/usr/bin:/bin"})
    return proc, time.monotonic() - start


def plant_aged_lock(dotlock, content):
    """ALICE's spool and a lock holding content, LOCK_AGE seconds old (ctime too)."""
    dotlock.make_spool(ALICE)
    lock = dotlock.lock_file(ALICE)
    lock.write_bytes(content)
    os.chown(lock, dotlock.accounts[ALICE].pw_uid, dotlock.mail_gid)
    time.sleep(LOCK_AGE)
    return lock


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid(dotlock):
    proc = subprocess.Popen(["sleep", "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


BROKEN = {
    "empty": lambda: b"",
    "nuls": lambda: b"\0" * 12,          # a size that reached the disk, its data not
    "newline": lambda: b"\n",
    "dead-local-pid": lambda: f"{dead_pid()}:{HOST}\n".encode(),
    "this-host-no-pid": lambda: f"x:{HOST}".encode(),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_lock_from_before_the_boot_is_broken_at_once(dotlock, kind):
    lock = plant_aged_lock(dotlock, BROKEN[kind]())
    proc, took = run_booted_since(dotlock, 1)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # At the first look, not after the change timeout (3 s here, 120 s installed).
    assert took < 1.5
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"
    assert dotlock.leftovers() == [lock.name]


@pytest.mark.parametrize("kind", ["other-host", "no-host", "live-local-pid"])
def test_lock_from_before_the_boot_is_kept_unless_empty_or_ours(dotlock, kind, live_pid):
    content = {"other-host": f"{dead_pid()}:otherhost.example\n",
               "no-host": "garbage",
               "live-local-pid": f"{live_pid}:{HOST}\n"}[kind].encode()
    lock = plant_aged_lock(dotlock, content)
    proc, _ = run_booted_since(dotlock, 1)
    assert_refused(proc, 75, "lock-timeout")
    assert lock.read_bytes() == content


def test_empty_lock_made_after_the_boot_waits_for_the_change_timeout(dotlock):
    lock = plant_aged_lock(dotlock, b"")
    # The boot 30 s ago: the lock is younger than this boot, someone may be writing it.
    proc, _ = run_booted_since(dotlock, 30)
    assert_refused(proc, 75, "lock-timeout")
    assert lock.read_bytes() == b""
    # The same helper and lock in the real boot: only the change timeout breaks it.
    while time.time() - os.stat(lock).st_ctime < CHANGE_TIMEOUT + 1.2:
        time.sleep(0.2)
    proc = dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE)))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_boot_rule_has_no_sanitizer_findings(dotlock):
    # The instrumented copy is not setgid (see test_dotlock_sanitizers.py): the mail
    # group comes as a supplementary group; rule 0's read and override run.
    from tests.dotlock.test_dotlock_sanitizers import FINDING, SAN_ENV

    entry = dotlock.accounts[ALICE]
    for kind in ("empty", "this-host-no-pid"):
        lock = plant_aged_lock(dotlock, BROKEN[kind]())
        proc, _ = run_booted_since(dotlock, 1, helper=dotlock.bin / "mailslot-dotlock.asan",
                                   env=SAN_ENV, groups=[entry.pw_gid, dotlock.mail_gid])
        assert proc.returncode not in (FINDING,), proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert lock.read_text() == f"{os.getpid()}:{HOST}\n"
        lock.unlink()
