"""/var/mail-style delivery: a spool directory root:mail 2775 the user cannot write.

The real mailslot-dotlock is built with its spool directory pointing into a temp dir
(SPOOL_DIR=..., LOCK_ATTEMPTS=2 so that a refused lock takes 2 s) and installed
there root:mail 2755, beside a spool directory root:mail 2775, as Debian's /var/mail.
The deliverer runs as a real system user (the helper maps the caller's uid to its
login) and never holds the mail group: the INBOX is created and dotlocked through
the helper, everything else (the fcntl lock, the append, the journal in the user's
own ~/mail/.imap) it does itself. Needs root, as CI has.
"""

import fcntl
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from tests.mbox.mboxtest import MboxHome, check_structure, journal_active, verify_mbox
from tests.support import REPO, needs_root, run_as, world_tempdir

pytestmark = needs_root

HELPER_C = os.path.join(REPO, "helper_c")


@pytest.fixture(scope="module")
def spool_helper():
    """(spool dir, helper path) -- built and installed once for this module."""
    for tool in ("make", "cc", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    base = tempfile.mkdtemp(prefix="mailslot-spool-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        mail_gid = grp.getgrnam("mail").gr_gid
        spool = os.path.join(base, "spool")
        os.mkdir(spool)
        os.chown(spool, 0, mail_gid)
        os.chmod(spool, 0o2775)
        subprocess.run(["make", "-s", "-C", HELPER_C, f"OUT={base}/build",
                        f"SPOOL_DIR={spool}", f"POLICY_PATH={base}/policy", "LOCK_ATTEMPTS=2",
                        f"{base}/build/mailslot-dotlock"], check=True)
        helper = os.path.join(base, "mailslot-dotlock")
        shutil.copy(os.path.join(base, "build", "mailslot-dotlock"), helper)
        os.chown(helper, 0, mail_gid)
        os.chmod(helper, 0o2755)
        yield spool, helper
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def spool_user(spool_helper, mail_users):
    """(MboxHome of the first test user, spool dir, helper, its spool file); spool emptied."""
    spool, helper = spool_helper
    for name in os.listdir(spool):
        os.unlink(os.path.join(spool, name))
    user = mail_users[0]
    home = MboxHome.create(uid=user.pw_uid, gid=user.pw_gid)
    yield home, spool, helper, os.path.join(spool, user.pw_name)
    home.cleanup()


def plan(home, spool, helper, **settings):
    conf = {"mail_privileged_group": "mail"}
    conf.update(settings)
    return home.plan(location=f"mbox:~/mail:INBOX={spool}/" + _login(home.uid),
                     settings=conf, helper=helper)


def _login(uid):
    import pwd
    return pwd.getpwuid(uid).pw_name


def test_inbox_is_created_and_locked_through_the_helper(spool_user):
    home, spool, helper, inbox = spool_user
    code, results, err = home.run(plan(home, spool, helper) | {"count": 3})
    assert code == 0, err
    assert [r.get("error") for r in results] == [None] * 3
    st = os.lstat(inbox)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == home.uid and st.st_gid == grp.getgrnam("mail").gr_gid
    assert sorted(verify_mbox(inbox)) == ["m-0", "m-1", "m-2"]
    # Nothing else in the spool: no lock, no helper temp file, no journal.
    assert os.listdir(spool) == [os.path.basename(inbox)]
    assert not journal_active(home.path("mail", ".imap", "INBOX", "mailslot-journal"))


def test_without_mail_privileged_group_the_setting_is_named(spool_user):
    home, spool, helper, inbox = spool_user
    code, results, err = home.run(plan(home, spool, helper, mail_privileged_group=""))
    assert code == 0, err
    assert "set mail_privileged_group=mail" in results[0]["error"]
    assert os.listdir(spool) == []


def test_a_live_lock_in_the_spool_is_waited_for_then_a_dead_one_broken(spool_user):
    home, spool, helper, inbox = spool_user
    assert home.run(plan(home, spool, helper))[0] == 0
    lock = inbox + ".lock"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(lock, "w") as f:
            f.write(f"{sleeper.pid}:{socket.gethostname()}\n")
        start = time.monotonic()
        code, results, err = home.run(plan(home, spool, helper, mbox_lock_timeout=3)
                                      | {"tag": "late"})
        assert code == 0, err
        assert "Timeout while waiting for lock" in results[0]["error"]
        assert time.monotonic() - start >= 3
        assert open(lock).read() == f"{sleeper.pid}:{socket.gethostname()}\n"
    finally:
        sleeper.kill()
        sleeper.wait()
    code, results, err = home.run(plan(home, spool, helper) | {"tag": "after"})
    assert code == 0 and "offset" in results[0], (err, results)
    assert sorted(verify_mbox(inbox)) == ["after-0", "m-0"]
    assert os.listdir(spool) == [os.path.basename(inbox)]


@pytest.mark.parametrize("order, expected", [("dotlock fcntl", ["lock"]),
                                             ("fcntl dotlock", ["trylock"])])
def test_helper_waits_only_for_the_first_lock(spool_user, order, expected):
    """The dotlock is asked of the helper with "lock" (its own ~20 s of attempts) only
    when it is the first lock; after fcntl it is "trylock" (one check), so the engine
    never sits in the helper while holding the fcntl lock (a busy later lock lets
    everything go and starts the round again). The helper's trylock itself is
    tested in tests/dotlock."""
    home, spool, helper, inbox = spool_user
    assert home.run(plan(home, spool, helper))[0] == 0
    tag = order.split()[0]
    calls = os.path.join(os.path.dirname(helper), f"calls-{tag}")
    wrapper = os.path.join(os.path.dirname(helper), f"logging-{tag}")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\necho "$1" >> {calls}\nexec {helper} "$@"\n')
    # Installed as the helper must be (the engine checks); Linux ignores set-group-id
    # on a script, and the exec'ed real helper brings its own.
    os.chown(wrapper, 0, grp.getgrnam("mail").gr_gid)
    os.chmod(wrapper, 0o2755)
    open(calls, "w").close()
    os.chmod(calls, 0o666)
    code, results, err = home.run(plan(home, spool, wrapper, mbox_write_locks=order)
                                  | {"tag": tag})
    assert code == 0 and "offset" in results[0], (err, results)
    assert [c for c in open(calls).read().split() if c.endswith("lock")
            and c != "unlock"] == expected
    assert sorted(verify_mbox(inbox)) == sorted(["m-0", f"{tag}-0"])
    assert os.listdir(spool) == [os.path.basename(inbox)]


def test_sigterm_while_holding_the_helpers_lock_unlocks_through_it(spool_user):
    home, spool, helper, inbox = spool_user
    assert home.run(plan(home, spool, helper))[0] == 0
    before = open(inbox, "rb").read()
    holder = os.open(inbox, os.O_RDWR)
    fcntl.lockf(holder, fcntl.LOCK_SH)
    try:
        proc = home.spawn(plan(home, spool, helper, mbox_write_locks="dotlock fcntl")
                          | {"tag": "term"})
        # It has the helper lock and waits for the fcntl reader (a reader never
        # waits for a dotlock, so the dotlock is kept meanwhile): catch it there.
        until = time.monotonic() + 30
        while not os.path.exists(inbox + ".lock"):
            assert time.monotonic() < until, "the helper never locked"
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        os.close(holder)
    assert proc.returncode == -signal.SIGTERM
    assert os.listdir(spool) == [os.path.basename(inbox)]
    assert open(inbox, "rb").read() == before
    assert not journal_active(home.path("mail", ".imap", "INBOX", "mailslot-journal"))


ORPHAN_SCRIPT = """
import json, os, sys
plan = json.loads(sys.argv[1])
sys.path.insert(0, plan["pyside"])
from mailslot.storage import open_storage
from mailslot.storage.mbox_lock import MboxLocks
storage = open_storage(plan["location"], user="t", home=plan["home"],
                       hostname=os.uname().nodename, settings=plan["settings"],
                       dotlock_helper=plan["helper"])
inbox = plan["inbox"]
code, message = storage.helper.run("lock", inbox)   # the lock names this process
made = os.path.exists(inbox + ".lock")
dir_fd = os.open(os.path.dirname(inbox), os.O_RDONLY | os.O_DIRECTORY)
locks = MboxLocks(storage, dir_fd, os.path.dirname(inbox), os.path.basename(inbox),
                   True, os.open(inbox, os.O_RDWR))
locks.dotlock_tried = True      # an acquire cut short before it noted the lock
locks.release()
print(json.dumps({"code": code, "made": made, "left": os.path.exists(inbox + ".lock")}))
"""


def test_a_lock_the_helper_made_for_an_interrupted_acquire_is_removed(spool_user):
    """The race behind a SIGTERM that lands just after mailslot-dotlock made the lock
    and before the engine noted it: release() finds the lock naming our pid in a
    directory we cannot write, and has the helper remove it (no lock left behind)."""
    home, spool, helper, inbox = spool_user
    assert home.run(plan(home, spool, helper))[0] == 0
    script = os.path.join(os.path.dirname(helper), "orphan.py")
    with open(script, "w") as f:
        f.write(ORPHAN_SCRIPT)
    os.chmod(script, 0o644)
    fields = plan(home, spool, helper) | {"inbox": inbox}
    argv = [sys.executable, "-I", script, json.dumps(fields)]
    proc = run_as(pwd.getpwuid(home.uid), argv)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"code": 0, "made": True,
                                                       "left": False}
    assert os.listdir(spool) == [os.path.basename(inbox)]


def test_another_users_spool_file_is_refused(spool_user, mail_users):
    home, spool, helper, inbox = spool_user
    other = MboxHome.create(uid=mail_users[1].pw_uid, gid=mail_users[1].pw_gid)
    try:
        # The second user configured (wrongly, or maliciously) with the first one's spool file.
        code, results, err = other.run(other.plan(
            location=f"mbox:~/mail:INBOX={inbox}", helper=helper,
            settings={"mail_privileged_group": "mail"}))
        assert code == 0, err
        assert "not-own-spool" in results[0]["error"]      # the helper's own rule
        assert os.listdir(spool) == []
        assert home.run(plan(home, spool, helper))[0] == 0
        code, results, err = other.run(other.plan(
            location=f"mbox:~/mail:INBOX={inbox}", helper=helper,
            settings={"mail_privileged_group": "mail"}))
        assert "Permission denied" in results[0]["error"]
        assert sorted(verify_mbox(inbox)) == ["m-0"]
    finally:
        other.cleanup()


def test_planted_symlink_in_the_spool_is_not_followed(spool_user, tmp_path):
    home, spool, helper, inbox = spool_user
    victim = world_tempdir("mailslot-victim-")
    try:
        target = os.path.join(victim, "file")
        with open(target, "wb") as f:
            f.write(b"precious\n")
        os.chown(target, home.uid, home.gid)
        os.symlink(target, inbox)
        code, results, err = home.run(plan(home, spool, helper))
        assert code == 0, err
        assert "symlink" in results[0]["error"]
        assert open(target, "rb").read() == b"precious\n"
        assert sorted(os.listdir(spool)) == [os.path.basename(inbox)]
    finally:
        shutil.rmtree(victim, ignore_errors=True)




@pytest.fixture
def installed_with_test_helper(spool_user, installed):
    """A copy of the installed engine whose mailslot-dotlock is the test build."""
    home, spool, helper, inbox = spool_user
    lib = world_tempdir("mailslot-lib-")
    engine_dir = os.path.join(lib, "mailslot")
    shutil.copytree(installed, engine_dir, symlinks=True)
    target = os.path.join(engine_dir, "mailslot-dotlock")
    shutil.copy(helper, target)
    os.chown(target, 0, grp.getgrnam("mail").gr_gid)
    os.chmod(target, 0o2755)
    conf = os.path.join(lib, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write(f"mail_location: mbox:{home.home}/mail:INBOX={spool}/%u\n"
                f"mail_privileged_group: mail\nlog_path: {home.home}/mailslot.log\n"
                "first_valid_uid: 100\n")
    os.chmod(conf, 0o644)
    yield os.path.join(engine_dir, "mailslot-lda"), conf
    shutil.rmtree(lib, ignore_errors=True)


ENGINE_MSG = b"Subject: via the engine\n\nFrom here on.\n"


def test_installed_engine_delivers_into_the_spool(spool_user, installed_with_test_helper,
                                                  mail_users):
    """mailslot-lda as the user, mbox INBOX in the spool, the helper beside it."""
    home, spool, helper, inbox = spool_user
    engine, conf = installed_with_test_helper
    for _ in range(2):
        proc = run_as(mail_users[0], [engine, "-c", conf, "-f", "alice@example.org"],
                      input=ENGINE_MSG)
        assert proc.returncode == 0, proc.stderr
    with open(inbox, "rb") as f:
        data = f.read()
    assert check_structure(data) == 2
    assert data.endswith(b"Subject: via the engine\n\n>From here on.\n\n")
    assert os.listdir(spool) == [os.path.basename(inbox)]
    assert os.stat(inbox).st_uid == mail_users[0].pw_uid


def test_installed_engine_writes_the_envelope_sender(spool_user, installed_with_test_helper,
                                                     mail_users):
    home, spool, helper, inbox = spool_user
    engine, conf = installed_with_test_helper
    for sender, word in (("alice@example.org", b"alice@example.org"), ("", b"MAILER-DAEMON")):
        proc = run_as(mail_users[0], [engine, "-c", conf, "-f", sender], input=ENGINE_MSG)
        assert proc.returncode == 0, proc.stderr
        with open(inbox, "rb") as f:
            last = f.read().rsplit(b"\n\nFrom ", 1)[-1]
        assert last.startswith(word + b"  ") or last.startswith(b"From " + word + b"  ")
