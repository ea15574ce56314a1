"""Shared fixtures: the installed engine, system users to deliver as, running as them.

The engine never runs as root, so tests that deliver install a copy with
`make install DESTDIR=...` into a world-readable temp dir and run it as another uid
through setpriv (tests run as root, as CI does). Helpers here are plain functions
too, so other test packages can import them (`from tests.conftest import ...` is not
needed: use the fixtures).
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


@pytest.fixture(scope="session")
def installed():
    """Install the engine (make install) into a temp DESTDIR; return its lib dir."""
    dest = world_tempdir("mailslot-inst-")
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["chmod", "-R", "a+rX", dest], check=True)
    yield os.path.join(dest, "usr/lib/mailslot")
    shutil.rmtree(dest, ignore_errors=True)


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


@pytest.fixture(scope="session")
def mail_users():
    """Two ordinary system users, mslt-eng1 and mslt-eng2, with homes in a temp dir."""
    if not IS_ROOT:
        pytest.skip("needs root to create test users (CI runs as root)")
    base = world_tempdir("mailslot-homes-")
    users = [ensure_user(name, os.path.join(base, name))
             for name in ("mslt-eng1", "mslt-eng2")]
    yield users
    for entry in users:
        remove_user(entry.pw_name)
    shutil.rmtree(base, ignore_errors=True)


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
