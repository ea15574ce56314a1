"""mailslot-dotlock: only the caller's own spool file, NFS-safe locks, nothing left.

Each test runs the installed setgid-mail helper as a test user and checks the exit
code, the stderr line naming the rule for refusals, and the spool directory after.
"""
import os
import socket
import stat
import time

import pytest

from tests.dotlock.dotlocktest import ALICE, BOB, assert_refused


def ok(proc):
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


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


def test_held_lock_is_not_taken_and_no_temp_file_remains(dotlock):
    dotlock.make_spool(ALICE)
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    before = dotlock.lock_file(ALICE).read_text()
    start = time.monotonic()
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 75,
                   "lock-timeout")
    assert time.monotonic() - start < 10
    assert dotlock.lock_file(ALICE).read_text() == before
    assert dotlock.leftovers() == [f"{ALICE}.lock"]


@pytest.mark.parametrize("content, age", [
    ("999999999:{host}\n", 0),           # its pid is gone on this host
    ("1:otherhost.example\n", 600),      # untouched for longer than 120 s
    ("garbage", 600),
])
def test_stale_lock_is_replaced(dotlock, content, age):
    dotlock.make_spool(ALICE)
    lock = dotlock.lock_file(ALICE)
    lock.write_text(content.format(host=socket.gethostname()))
    os.chown(lock, dotlock.accounts[ALICE].pw_uid, dotlock.mail_gid)
    old = time.time() - age
    os.utime(lock, (old, old))
    ok(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))))
    assert lock.read_text() == f"{os.getpid()}:{socket.gethostname()}\n"


def test_fresh_lock_of_a_live_process_elsewhere_is_respected(dotlock):
    dotlock.make_spool(ALICE)
    lock = dotlock.lock_file(ALICE)
    lock.write_text("1:otherhost.example\n")
    assert_refused(dotlock.run(ALICE, "lock", str(dotlock.spool_file(ALICE))), 75,
                   "lock-timeout")
    assert lock.read_text() == "1:otherhost.example\n"


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
    for cmd in ("lock", "create", "unlock", "touch"):
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


@pytest.mark.parametrize("cmd", ["lock", "create", "touch", "unlock"])
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


@pytest.mark.parametrize("args", [[], ["lock"], ["steal", "/x"], ["lock", "/a", "/b"]])
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
