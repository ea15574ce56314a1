"""mailslot-dotlock: only the caller's own spool file, NFS-safe locks, nothing left.

Each test runs the installed setgid-mail helper as a test user and checks the exit
code, the stderr line naming the rule for refusals, and the spool directory after.
"""
import os
import socket
import stat
import subprocess
import time

import pytest

from tests.dotlock.dotlocktest import ALICE, ALICE_LOCK, BOB, CHANGE_TIMEOUT, assert_refused


def ok(proc):
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


HOST = socket.gethostname()


def plant_lock(dotlock, content, mtime_age=0):
    """An existing lock of ALICE's holding content, its mtime set mtime_age s back
    (its ctime stays now: only waiting ages a lock by Dovecot's rule)."""
    lock = dotlock.lock_file(ALICE)
    lock.write_text(content)
    os.chown(lock, dotlock.accounts[ALICE].pw_uid, dotlock.mail_gid)
    if mtime_age:
        old = time.time() - mtime_age
        os.utime(lock, (old, old))
    return lock


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


@pytest.fixture(params=["caller", "root"])
def live_holder(request, dotlock):
    """A live local process: the caller's own (kill(pid, 0) works) or root's (EPERM)."""
    entry = dotlock.accounts[ALICE]
    cmd = ["sleep", "120"]
    if request.param == "caller":
        cmd = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
               "--init-groups"] + cmd
    proc = subprocess.Popen(cmd)
    yield proc
    proc.kill()
    proc.wait()


def test_create_makes_the_callers_private_spool_file(dotlock):
    ok(dotlock.run(ALICE, "create", str(dotlock.spool_file(ALICE))))
    st = os.lstat(dotlock.spool_file(ALICE))
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert st.st_uid == dotlock.accounts[ALICE].pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o600
    # A second create of one's own file is fine; nothing else appeared.
    ok(dotlock.run(ALICE, "create", str(dotlock.spool_file(ALICE))))
    assert dotlock.leftovers() == []


def test_lock_and_unlock_leave_nothing_behind(dotlock):
    dotlock.make_spool(ALICE)
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    lock = dotlock.lock_file(ALICE)
    st = os.lstat(lock)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == dotlock.accounts[ALICE].pw_uid
    # Dovecot's content: "<pid>:<host>", the pid of the process holding the lock.
    assert lock.read_text() == f"{os.getpid()}:{socket.gethostname()}\n"
    assert dotlock.leftovers() == [lock.name]
    ok(dotlock.run(ALICE, "unlock", str(dotlock.spool_file(ALICE))))
    assert dotlock.leftovers() == []


def test_held_lock_is_not_taken_and_no_temp_file_remains(dotlock, live_holder):
    dotlock.make_spool(ALICE)
    plant_lock(dotlock, f"{live_holder.pid}:{HOST}\n", mtime_age=10)
    before = dotlock.lock_file(ALICE).read_text()
    start = time.monotonic()
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 75,
                   "lock-timeout")
    assert time.monotonic() - start < 10
    assert dotlock.lock_file(ALICE).read_text() == before
    assert dotlock.leftovers() == [f"{ALICE}.lock"]


# --- when a lock is stale: Dovecot 2.3's check_lock() ---------------------------------

def age_past_the_change_timeout(path):
    """Sleep until path's ctime is more than CHANGE_TIMEOUT whole seconds old."""
    while time.time() - os.stat(path).st_ctime < CHANGE_TIMEOUT + 1.2:
        time.sleep(0.2)


def test_lock_of_a_dead_local_pid_is_broken_at_once(dotlock):
    dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, f"{dead_pid()}:{HOST}\n", mtime_age=10)
    start = time.monotonic()
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    # At the first look, not after waiting: a dead local pid decides alone.
    assert time.monotonic() - start < 1
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"
    assert dotlock.leftovers() == [lock.name]


def test_live_local_holder_keeps_its_lock_however_old(dotlock, live_holder):
    dotlock.make_spool(ALICE)
    content = f"{live_holder.pid}:{HOST}\n"
    lock = plant_lock(dotlock, content, mtime_age=100000)
    # Old by every clock: mtime, ctime and the spool file all beyond the change
    # timeout. Dovecot still never overrides a live local pid; nor may we.
    old = time.time() - 100000
    os.utime(dotlock.spool_file(ALICE), (old, old))
    age_past_the_change_timeout(lock)
    for cmd in ("lock", "trylock"):
        assert_refused(dotlock.run(ALICE, cmd, str(dotlock.spool_file(ALICE))), 75,
                       "lock-timeout")
        assert lock.read_text() == content
    # The pid is what kept it: once the holder is gone the same lock is broken.
    live_holder.kill()
    live_holder.wait()
    ok(dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE))))
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"


@pytest.mark.parametrize("content", [
    "1:otherhost.example\n",       # a pid means nothing on another host
    "+1:{host}\n",                 # not a decimal pid: no pid at all (Dovecot's str_to_pid)
    "garbage",
])
def test_lock_without_a_local_pid_is_broken_after_the_change_timeout(dotlock, content):
    dotlock.make_spool(ALICE)
    old = time.time() - 600
    os.utime(dotlock.spool_file(ALICE), (old, old))
    content = content.format(host=HOST)
    # An mtime set into the past does not age a lock: its ctime is now.
    lock = plant_lock(dotlock, content, mtime_age=600)
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 75,
                   "lock-timeout")
    assert lock.read_text() == content
    age_past_the_change_timeout(lock)
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"


def test_spool_file_activity_keeps_a_foreign_lock_alive(dotlock):
    spool = dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, "1:otherhost.example\n")
    age_past_the_change_timeout(lock)
    # The holder on the other host is still writing the mailbox.
    with open(spool, "ab") as f:
        f.write(b"From x  Thu Jan  1 00:00:00 1970\n\nbody\n")
    assert_refused(dotlock.run(ALICE, "trylock", str(spool)), 75, "lock-timeout")
    assert lock.read_text() == "1:otherhost.example\n"


def test_fresh_lock_is_not_read_for_its_pid(dotlock):
    # Written less than STALE_PID_CHECK_SECS (2 s) ago: alive whatever it says.
    dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, f"{dead_pid()}:{HOST}\n")
    assert_refused(dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE))), 75,
                   "lock-timeout")
    time.sleep(3.1)
    ok(dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE))))
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"


def test_lock_naming_our_own_parent_is_taken_over(dotlock):
    # Dovecot's "it's us": the pid we would write (our parent's) is locking again.
    dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, f"{os.getpid()}:{HOST}", mtime_age=10)
    ok(dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE))))
    # Ours now (the helper writes a newline; the planted lock had none, as Dovecot's).
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"
    assert time.time() - os.stat(lock).st_mtime < 60


def test_trylock_checks_once(dotlock, live_holder):
    dotlock.make_spool(ALICE)
    plant_lock(dotlock, f"{live_holder.pid}:{HOST}\n", mtime_age=10)
    start = time.monotonic()
    proc = dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE)))
    assert time.monotonic() - start < 1         # lock waits LOCK_DELAY between checks
    assert_refused(proc, 75, "lock-timeout")
    assert b"tried once" in proc.stderr
    dotlock.lock_file(ALICE).unlink()
    ok(dotlock.run(ALICE, "trylock", str(dotlock.spool_file(ALICE))))
    ok(dotlock.run(ALICE, "unlock", str(dotlock.spool_file(ALICE))))
    assert dotlock.leftovers() == []


def test_symlink_at_the_lock_name_is_never_removed(dotlock, tmp_path):
    dotlock.make_spool(ALICE)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, dotlock.lock_file(ALICE))
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 77,
                   "lock-type")
    assert os.path.islink(dotlock.lock_file(ALICE)) and victim.read_text() == "precious\n"
    os.unlink(dotlock.lock_file(ALICE))


def test_touch_refreshes_the_lock(dotlock):
    dotlock.make_spool(ALICE)
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    lock = dotlock.lock_file(ALICE)
    os.utime(lock, (1000, 1000))
    ok(dotlock.run(ALICE, "touch", str(dotlock.spool_file(ALICE))))
    assert time.time() - os.stat(lock).st_mtime < 60


def test_unlock_refuses_a_lock_held_by_another_process(dotlock):
    dotlock.make_spool(ALICE)
    lock = dotlock.lock_file(ALICE)
    lock.write_text(f"1:{socket.gethostname()}\n")
    os.chown(lock, dotlock.accounts[ALICE].pw_uid, dotlock.mail_gid)
    assert_refused(dotlock.run(ALICE, "unlock", str(dotlock.spool_file(ALICE))), 77,
                   "lock-not-ours")
    assert lock.exists()


def test_another_users_spool_is_refused(dotlock):
    dotlock.make_spool(BOB)
    for cmd in ("lock", "trylock", "create", "unlock", "touch"):
        assert_refused(dotlock.run(ALICE, cmd, str(dotlock.spool_file(BOB))), 77,
                       "not-own-spool")
    assert dotlock.leftovers() == []


def test_spool_owned_by_someone_else_under_the_callers_name_is_refused(dotlock):
    dotlock.make_spool(ALICE, owner=BOB)
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 77,
                   "spool-owner")
    assert_refused(dotlock.run(ALICE, "create", str(dotlock.spool_file(ALICE))), 77,
                   "spool-owner")
    assert dotlock.leftovers() == []


@pytest.mark.parametrize("cmd", ["lock", "trylock", "create", "touch", "unlock"])
def test_symlinked_spool_is_refused(dotlock, cmd, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, dotlock.spool_file(ALICE))
    assert_refused(dotlock.run(ALICE, cmd, str(dotlock.spool_file(ALICE))), 77,
                   "spool-symlink")
    assert victim.read_text() == "precious\n"
    assert dotlock.leftovers() == []


def test_hard_linked_spool_is_refused(dotlock, tmp_path):
    spool = dotlock.make_spool(ALICE)
    os.link(spool, dotlock.spool / "elsewhere")
    assert_refused(dotlock.run(ALICE, "lock", str(spool)), 77, "spool-links")
    os.unlink(dotlock.spool / "elsewhere")


@pytest.mark.parametrize("path", [
    "/tmp/{user}", "{spool}/../spool/{user}", "{spool}//{user}", "{spool}/{user}.lock",
    "{user}", "{spool}/./{user}",
])
def test_paths_outside_the_spool_directory_are_refused(dotlock, path):
    dotlock.make_spool(ALICE)
    arg = path.format(user=ALICE, spool=dotlock.spool)
    assert_refused(dotlock.run(ALICE, "lock", arg), 77, "not-own-spool")
    assert dotlock.leftovers() == []


def test_missing_spool_file_must_be_created_first(dotlock):
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 75,
                   "spool-missing")
    assert dotlock.leftovers() == []


@pytest.mark.parametrize("args", [[], ["lock"], ["trylock"], ["steal", "/x"],
                                  ["lock", "/a", "/b"], ["Lock", "/x"]])
def test_bad_command_lines(dotlock, args):
    assert_refused(dotlock.run(ALICE, *args), 64, "usage")


def test_helper_gives_no_mail_group_to_what_it_leaves(dotlock):
    # The helper's own files in the spool are the caller's, mode 0600: the mail group
    # it held reaches no one.
    ok(dotlock.run(ALICE, "create", str(dotlock.spool_file(ALICE))))
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    for name in (ALICE, f"{ALICE}.lock"):
        st = os.lstat(dotlock.spool / name)
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, name


def test_installed_mode_is_setgid_mail(dotlock):
    st = os.stat(dotlock.helper)
    assert stat.S_IMODE(st.st_mode) == 0o2755
    assert st.st_gid == dotlock.mail_gid and st.st_uid == 0


# --- only a plausible lock is ever removed (issue: another user's spool deleted) -------

def test_login_ending_in_lock_is_refused(dotlock):
    # Its spool file would be ALICE's lock name.
    for cmd in ("create", "lock", "trylock", "touch", "unlock"):
        proc = dotlock.run(ALICE_LOCK, cmd, str(dotlock.spool_file(ALICE_LOCK)))
        assert_refused(proc, 77, "spool-name")
    assert dotlock.leftovers() == []


def _spool_of_alice_lock(dotlock, content):
    """ALICE_LOCK's spool file (made before such logins were refused), which is also
    ALICE's lock name, holding content, its mtime old enough to be read for a pid."""
    path = dotlock.lock_file(ALICE)
    path.write_text(content)
    os.chown(path, dotlock.accounts[ALICE_LOCK].pw_uid, dotlock.mail_gid)
    os.chmod(path, 0o600)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("cmd", ["lock", "trylock"])
def test_another_users_file_at_the_lock_name_is_never_removed(dotlock, cmd):
    # "pid:host" of a dead local pid: a lock of ALICE's would be broken at once. It is
    # ALICE_LOCK's mail, so it stays, and ALICE is told why (75, the MTA retries).
    dotlock.make_spool(ALICE)
    spool = _spool_of_alice_lock(dotlock, f"{dead_pid()}:{HOST}\nmail of mslt-dalice.lock\n")
    before = spool.read_bytes()
    proc = dotlock.run(ALICE, cmd, str(dotlock.spool_file(ALICE)))
    assert_refused(proc, 75, "lock-foreign")
    assert spool.read_bytes() == before
    assert dotlock.leftovers() == [spool.name]


def test_another_users_pid_1_lock_is_named_not_waited_on(dotlock):
    # "1:<host>" (pid 1 is always alive) in a file another user owns: before, ALICE
    # waited out every attempt for ever; now she is refused at once with the reason.
    dotlock.make_spool(ALICE)
    _spool_of_alice_lock(dotlock, f"1:{HOST}\n")
    started = time.monotonic()
    proc = dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE)))
    assert_refused(proc, 75, "lock-foreign")
    assert time.monotonic() - started < 1.0      # no LOCK_DELAY_SECONDS wait


def test_implausibly_large_lock_is_never_removed(dotlock):
    # The caller's own file, but no lock holds 4 KiB: never judged stale, even once
    # it has aged past the change timeout.
    dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, f"{dead_pid()}:{HOST}\n" + "x" * 4096)
    time.sleep(CHANGE_TIMEOUT + 1)
    before = lock.read_bytes()
    proc = dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE)))
    assert_refused(proc, 75, "lock-implausible")
    assert lock.read_bytes() == before


def test_roots_stale_lock_is_still_broken(dotlock):
    # Owner root (a root-run mail tool's lock) stays breakable by the usual rule.
    dotlock.make_spool(ALICE)
    lock = plant_lock(dotlock, f"{dead_pid()}:{HOST}\n", mtime_age=10)
    os.chown(lock, 0, dotlock.mail_gid)
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    assert lock.read_text() == f"{os.getpid()}:{HOST}\n"


# --- a lock is born whole (issue: a kill left an empty lock for 120 s) -----------------

def test_a_killed_helper_never_leaves_an_empty_lock(dotlock):
    # SIGKILL the helper at many points of a lock; whatever is at the lock name
    # afterwards is a whole "pid:host" line (the content is written to a temp file
    # before it is linked into place). Temp files may be left; they are no lock.
    import random
    import signal
    rng = random.Random(1204)
    dotlock.make_spool(ALICE)
    entry = dotlock.accounts[ALICE]
    seen_locks = 0
    for trial in range(150):
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
             str(dotlock.helper), "lock", str(dotlock.spool_file(ALICE))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.004))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lock = dotlock.lock_file(ALICE)
        if lock.exists():
            seen_locks += 1
            content = lock.read_text()
            pid, _, host = content.rstrip("\n").partition(":")
            assert pid.isdigit() and host == HOST and content.endswith("\n"), (trial, content)
            lock.unlink()
    assert seen_locks > 0       # the kills did land after the link, too
