"""Plain helpers for tests: temp dirs every uid can reach, test users, setpriv.

Tests run as root (as CI does); the engine never does, so tests that deliver run it
as another uid through setpriv. Import with `from tests.support import ...`.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: creates users and "
                                "runs the engine as them via setpriv (CI runs as root)")


def world_tempdir(prefix):
    """A temp dir every uid may traverse (mkdtemp makes 0700)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def free_uid(start=4242):
    """The first uid from start on that has no passwd entry (to run a program as)."""
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def empty_directory(path):
    """Remove everything inside path (a test user's home between cases), keeping
    path itself; a symlink is removed, never followed."""
    for entry in os.listdir(path):
        inner = os.path.join(path, entry)
        if os.path.isdir(inner) and not os.path.islink(inner):
            shutil.rmtree(inner)
        else:
            os.unlink(inner)


def ensure_user(name, home):
    """Create system user name with home (idempotent); return its pwd entry."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir", home,
                        "--shell", "/usr/sbin/nologin", name], check=True)
        entry = pwd.getpwnam(name)
    os.makedirs(home, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return entry


def remove_user(name):
    subprocess.run(["userdel", name], check=False, stderr=subprocess.DEVNULL)


def run_as(entry, argv, *, input=None, env=None, cwd=None, timeout=60):
    """Run argv as the pwd entry's uid/gid (with its groups) via setpriv."""
    base_env = {"PATH": "/usr/bin:/bin", "USER": entry.pw_name, "HOME": entry.pw_dir,
                "LOGNAME": entry.pw_name}
    if env:
        base_env.update(env)
    cmd = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
           "--init-groups", "--"] + list(argv)
    return subprocess.run(cmd, input=input, env=base_env, cwd=cwd or "/",
                          capture_output=True, timeout=timeout)


# A fixed clock for everything that stamps a date (log lines, Maildir names, mbox
# From_ lines, UIDVALIDITY): 2026-03-05 07:08:09.25 UTC, a one-digit day, so that a
# space- or zero-padded day is checked whatever the date the tests run on.
FIXED_TIME = 1772694489.25
FIXED_DAY_UTC = "Thu Mar 05 07:08:09 2026"        # Dovecot's From_ line date, UTC


def fixed_clock():
    return FIXED_TIME


@pytest.fixture
def utc(monkeypatch):
    """TZ=UTC for the test (local-time stamps become predictable), restored after."""
    import time
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
